// Package cmdpb holds what a range's leaseholder serves (BatchRequest and
// BatchResponse), the command Raft carries and every replica applies
// (Command, with its split, merge and freeze triggers), and the system
// requests on the meta range.
package cmdpb
