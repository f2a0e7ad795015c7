package etcdapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Alarm is one member's active alarm, etcd's AlarmMember.
type Alarm struct {
	MemberID uint64
	Type     pb.AlarmType
}

// AlarmNoSpace is etcd's NOSPACE alarm: a member's storage passed its
// quota, and the cluster refuses writes that add data until it is disarmed.
const AlarmNoSpace = pb.AlarmType_NOSPACE

// AlarmType is etcd's alarm type.
type AlarmType = pb.AlarmType

// AlarmBackend is what etcd's Maintenance.Alarm needs from the node. A
// Backend that implements it too has its alarms served; without it, Alarm
// lists none and refuses activation. Alarms are cluster-wide: every member
// answers the same list.
type AlarmBackend interface {
	// Alarms lists the active alarms, by member and then type.
	Alarms(ctx context.Context) ([]Alarm, error)
	// RaiseAlarm activates a; an active alarm stays as it is.
	RaiseAlarm(ctx context.Context, a Alarm) error
	// DisarmAlarm deactivates a and reports whether it was active. A
	// condition that still holds (a member over its quota) raises the
	// alarm again.
	DisarmAlarm(ctx context.Context, a Alarm) (bool, error)
}

func alarmMembers(as []Alarm) []*pb.AlarmMember {
	out := make([]*pb.AlarmMember, 0, len(as))
	for _, a := range as {
		out = append(out, &pb.AlarmMember{MemberID: a.MemberID, Alarm: a.Type})
	}
	return out
}
