package etcdapi

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
)

// Errors this package answers with itself, for what Concord does not serve
// yet. They are codes.Unimplemented so clients do not retry them.
var (
	errAlarmActivate = status.Error(codes.Unimplemented, "etcdserver: alarm activation not supported yet")
	errHash          = status.Error(codes.Unimplemented, "etcdserver: Hash (of the whole storage file) is not supported; use HashKV")
	errMoveLeader    = status.Error(codes.Unimplemented, "etcdserver: move-leader not supported by this backend")
	errDowngrade     = status.Error(codes.Unimplemented, "etcdserver: downgrade not supported")
)

// toGRPCError translates a Backend error into what an etcd server would
// answer, so clientv3 recognises it (it matches errors by message):
//
//	concordpb code                    etcd error
//	COMPACTED                         ErrGRPCCompacted
//	FUTURE_REV                        ErrGRPCFutureRev
//	DUPLICATE_KEY                     ErrGRPCDuplicateKey
//	LEASE_NOT_FOUND                   ErrGRPCLeaseNotFound
//	LEASE_EXIST                       ErrGRPCLeaseExist
//	LEASE_TTL_TOO_LARGE               ErrGRPCLeaseTTLTooLarge
//	TOO_MANY_OPS                      ErrGRPCTooManyOps
//	INVALID_ARGUMENT                  codes.InvalidArgument, the message as is
//	NOT_LEADER, UNAVAILABLE           ErrGRPCNoLeader
//	AMBIGUOUS                         ErrGRPCTimeout (etcd's "may have happened")
//	CROSS_RANGE                       codes.Unimplemented, the message
//	RANGE_NOT_FOUND, KEY_MISMATCH,
//	RETRY, LOCKED, TXN_ABORTED        codes.Unavailable, the message (routing
//	                                  or a txn gave up on a retryable
//	                                  condition; nothing was applied)
//	INTERNAL and unknown codes        codes.Internal, the message
//	context.DeadlineExceeded          ErrGRPCTimeout
//	context.Canceled                  ErrGRPCCanceled
//	gRPC status Unavailable           kept (a peer could not be reached)
//	gRPC status ResourceExhausted     kept (a bound on the path was full;
//	                                  the message names it, and nothing was
//	                                  applied: etcd's own overload answer,
//	                                  "too many requests", has this code)
//	anything else                     codes.Unknown, the message (as etcd)
//
// Unavailable is the one code clientv3 retries, and only for reads; so only
// conditions under which nothing was applied map to it, and AMBIGUOUS maps to
// etcd's timeout error, which is what etcd itself returns when it cannot tell
// whether a write happened.
func toGRPCError(err error) error {
	var ce *kvpb.Error
	if errors.As(err, &ce) {
		switch ce.GetCode() {
		case kvpb.ErrorCode_COMPACTED:
			return rpctypes.ErrGRPCCompacted
		case kvpb.ErrorCode_FUTURE_REV:
			return rpctypes.ErrGRPCFutureRev
		case kvpb.ErrorCode_DUPLICATE_KEY:
			return rpctypes.ErrGRPCDuplicateKey
		case kvpb.ErrorCode_LEASE_NOT_FOUND:
			return rpctypes.ErrGRPCLeaseNotFound
		case kvpb.ErrorCode_LEASE_EXIST:
			return rpctypes.ErrGRPCLeaseExist
		case kvpb.ErrorCode_LEASE_TTL_TOO_LARGE:
			return rpctypes.ErrGRPCLeaseTTLTooLarge
		case kvpb.ErrorCode_TOO_MANY_OPS:
			return rpctypes.ErrGRPCTooManyOps
		case kvpb.ErrorCode_INVALID_ARGUMENT:
			return status.Error(codes.InvalidArgument, ce.Error())
		case kvpb.ErrorCode_NOT_LEADER, kvpb.ErrorCode_UNAVAILABLE:
			return rpctypes.ErrGRPCNoLeader
		case kvpb.ErrorCode_AMBIGUOUS:
			return rpctypes.ErrGRPCTimeout
		case kvpb.ErrorCode_CROSS_RANGE:
			return status.Error(codes.Unimplemented, ce.Error())
		case kvpb.ErrorCode_RANGE_NOT_FOUND, kvpb.ErrorCode_KEY_MISMATCH, kvpb.ErrorCode_RETRY, kvpb.ErrorCode_LOCKED, kvpb.ErrorCode_TXN_ABORTED:
			return status.Error(codes.Unavailable, ce.Error())
		case kvpb.ErrorCode_MEMBER_NOT_FOUND:
			return rpctypes.ErrGRPCMemberNotFound
		case kvpb.ErrorCode_MEMBER_NOT_LEARNER:
			return rpctypes.ErrGRPCMemberNotLearner
		case kvpb.ErrorCode_PEER_URL_EXISTS:
			return rpctypes.ErrGRPCPeerURLExist
		case kvpb.ErrorCode_FAILED_PRECONDITION:
			return status.Error(codes.FailedPrecondition, ce.Error())
		case kvpb.ErrorCode_RESOURCE_EXHAUSTED:
			return status.Error(codes.ResourceExhausted, ce.Error())
		default:
			return status.Error(codes.Internal, ce.Error())
		}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return rpctypes.ErrGRPCTimeout
	case errors.Is(err, context.Canceled):
		return rpctypes.ErrGRPCCanceled
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		// Already etcd's answer (an rpctypes error of the backend's, or
		// a bound that was full): as it is.
		return s.Err()
	}
	return status.Error(codes.Unknown, err.Error())
}

// GRPCError turns a Backend error into the gRPC status etcd's services
// answer with, for Concord's own services on the client port.
func GRPCError(err error) error { return toGRPCError(err) }
