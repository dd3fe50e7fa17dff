// etcdctl for berth tests: same as upstream go.etcd.io/etcd/etcdctl/v3 main.
package main

import (
	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
)

func main() {
	ctlv3.MustStart()
}
