// Package tlsutil builds the TLS configurations of a Concord node's ports
// from etcd's flags, and the certificates they use.
//
// It owns:
//
//  1. Options: one port's flags (--cert-file, --key-file, --trusted-ca-file,
//     --client-cert-auth, --auto-tls, --peer-cert-allowed-cn,
//     --cipher-suites, --tls-min-version, or their --peer- twins) and their
//     checks (Options.Validate, ParseCipherSuites, ParseVersion).
//  2. Source: the port's certificate, key and CA pool, loaded by New and
//     reloaded when their files change (checked at most every
//     reloadCheckInterval, on the next handshake), so certificates rotate
//     without a restart. With AutoTLS and no cert file, New first writes a
//     self-signed certificate into the directory it is given, as etcd does.
//  3. The TLS configurations built from a Source: ServerConfig and
//     ServerCredentials for a listener, Listener and AcceptedCredentials
//     for a port that splits TLS connections by protocol (the client port's
//     cmux), ClientCredentials to dial a peer, LoopbackClientConfig for a
//     node's calls to its own client port. Every one reads the Source's
//     current certificates at each handshake. Refused handshakes are logged,
//     at most one line per rejectLogInterval per Source.
//  4. Certificate creation for `concord cert`: CreateCA, CreateNode and
//     CreateClient (ECDSA P-256 keys).
//  5. VerifiedCommonName: the CN of the verified client certificate of a
//     gRPC call, which etcd's client-cert-auth takes as the user name.
//
// Order: Validate the Options, New the Source (which loads or generates the
// files and fails on any bad one), then build the configurations and serve.
package tlsutil
