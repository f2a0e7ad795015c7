// Package metapb holds the meta range's schema: range descriptors (span,
// replicas with their ids, generation) and node records.
package metapb
