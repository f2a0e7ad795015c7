// Command etcd is etcd v3.7.3's server, built from the go.etcd.io/etcd/server/v3
// module pinned in go.mod, so `concord bench compare` can run Concord and etcd
// side by side on the same machine without downloading a release. It adds
// nothing to etcd: its flags and behaviour are etcdmain's.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
