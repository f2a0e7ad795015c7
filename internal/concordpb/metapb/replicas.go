package metapb

// ID returns the replica's id in its range's Raft group: replica_id, or
// node_id for a descriptor written before replica ids existed.
func (rd *ReplicaDescriptor) ID() uint64 {
	if id := rd.GetReplicaId(); id != 0 {
		return id
	}
	return rd.GetNodeId()
}

// ReplicaOn returns the range's replica on node, or nil.
func (d *RangeDescriptor) ReplicaOn(node uint64) *ReplicaDescriptor {
	for _, rd := range d.GetReplicas() {
		if rd.GetNodeId() == node {
			return rd
		}
	}
	return nil
}

// NodeOf returns the node holding the range's replica id, or 0.
func (d *RangeDescriptor) NodeOf(replicaID uint64) uint64 {
	for _, rd := range d.GetReplicas() {
		if rd.ID() == replicaID {
			return rd.GetNodeId()
		}
	}
	return 0
}
