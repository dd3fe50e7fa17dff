// pause: the sandbox ("pause") container of berth's real test nodes. It holds
// the pod's namespaces, reaps orphaned children (it is PID 1 of the pod when
// the pod shares its PID namespace) and exits 0 on SIGINT or SIGTERM. Built
// statically (CGO_ENABLED=0) so its image is this one file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reapChildren()
			continue
		}
		os.Exit(0)
	}
}

// reapChildren waits for every child that has exited, without blocking.
func reapChildren() {
	for {
		pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
