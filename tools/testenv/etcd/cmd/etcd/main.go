// etcd server for berth tests: same as upstream go.etcd.io/etcd/server/v3 main
// (the server module cannot be `go install`ed because of its relative replaces).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
