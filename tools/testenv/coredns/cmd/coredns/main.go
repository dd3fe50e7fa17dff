// CoreDNS for berth's real test nodes, with only the plugins the cluster DNS
// needs: no forward (names outside the cluster never leave the machine) and
// no cache (a cached NXDOMAIN would hide a peer's name for a while after its
// pod starts). See docs/testing.md.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// directives: the enabled plugins, in CoreDNS's own execution order
// (core/dnsserver/zdirectives.go upstream).
var directives = []string{"ready", "health", "errors", "log", "kubernetes"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
