// Package kvpb holds the KV model that flows from the gateway through the
// router to a range's leaseholder (etcd's KV semantics, without etcd's
// packages), and Error, the structured error every layer returns.
package kvpb
