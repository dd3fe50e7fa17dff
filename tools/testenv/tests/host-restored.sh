#!/usr/bin/env bash
# tools/testenv/tests/host-restored.sh: `scripts/testenv down` leaves the host as `up --real-nodes`
# found it. Starts an instance of its own (run dir, ports, BERTH_TESTENV_NET_ID=49: it may run
# beside the test cluster), runs a pod with a volume on its real node, asserts the confinement
# chains exist while it runs, stops it, and compares the host's sysctls, links, addresses,
# routes, netns, iptables rules, mounts, cgroups, fixed directories and processes before and
# after. In between, every process of the instance is SIGKILLed (a session that ends without
# `down`) and `up` must start again over what it left. Exit 0 when nothing differs; run by
# scripts/test (needs root). See docs/testing.md.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
CACHE=${BERTH_TESTENV_CACHE:-$HOME/.cache/berth-testenv}
export BERTH_TESTENV_DIR=$CACHE/run-host-check BERTH_TESTENV_NET_ID=49
export BERTH_TESTENV_APISERVER_PORT=18443 BERTH_TESTENV_ETCD_PORT=25790 BERTH_TESTENV_ETCD_PEER_PORT=25800
export BERTH_TESTENV_KCM_PORT=18257 BERTH_TESTENV_SCHEDULER_PORT=18259 BERTH_TESTENV_KWOK_PORT=18247
TESTENV=$ROOT/scripts/testenv
OUT=$(mktemp -d)

fail() { printf 'host-restored: FAIL: %s\n' "$*" >&2; exit 1; }
note() { printf 'host-restored: %s\n' "$*" >&2; }

# snapshot DIR: the host state up/down may touch. Volatile values (counters, random, pids),
# other instances' run directories and processes are left out; iptables counters are dropped.
snapshot() {
  local d=$1
  mkdir -p "$d"
  sysctl -a 2>/dev/null | grep -vE '^(fs\.(dentry-state|file-nr|inode-nr|inode-state|quota\.)|kernel\.(ns_last_pid|random\.|pty\.nr)|net\.netfilter\.nf_conntrack_count)' >"$d/sysctl"
  ip -o link | sed -E 's/^[0-9]+: //; s/ qdisc.*//' | sort >"$d/links"
  ip -o addr | awk '{ print $2, $3, $4 }' | sort >"$d/addrs"
  ip route show table all | sort >"$d/routes"
  ip netns list | sort >"$d/netns"
  { iptables-save; ip6tables-save; } 2>/dev/null | sed -E '/^#/d; s/\[[0-9]+:[0-9]+\]//' >"$d/iptables"
  if command -v nft >/dev/null; then nft list tables | sort >"$d/nft-tables"; fi
  awk -v c="$CACHE/" 'index($5, c) != 1 || index($5, ENVIRON["BERTH_TESTENV_DIR"] "/") == 1 { print $5, $9 }' \
    /proc/self/mountinfo | sort >"$d/mounts"
  find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d -name 'berth-testenv-49-*' | sort >"$d/cgroups"
  ls -d /var/lib/kubelet /var/lib/cni /run/containerd /run/mount /run/netns 2>/dev/null >"$d/dirs" || true
  own_processes | grep -E 'containerd|kubelet|kube-proxy|coredns|/pause$|redis-server' | sort | uniq -c >"$d/processes" || true
}

# own_processes: the executables of this instance's processes (its run dir on the command line,
# or in its cgroups); another instance's pods coming and going on the same host are not ours
own_processes() {
  local p
  for p in /proc/[0-9]*; do
    grep -qF "$BERTH_TESTENV_DIR" "$p/cmdline" 2>/dev/null || grep -q 'berth-testenv-49-' "$p/cgroup" 2>/dev/null || continue
    readlink "$p/exe" 2>/dev/null || true
  done
}

# real_node_pod: a pod with a PVC on the real node, Ready (exercises mounts, cgroups, CNI, shims)
real_node_pod() {
  local k=("$BERTH_TESTENV_BIN/kubectl" --kubeconfig "$KUBECONFIG")
  "${k[@]}" create namespace host-check >/dev/null
  "${k[@]}" apply -n host-check -f "$ROOT/tools/testenv/testdata/real-node-redis.yaml" >/dev/null
  local deadline=$((SECONDS + 60))
  until "${k[@]}" get -n host-check pod/redis-0 >/dev/null 2>&1; do   # created by the StatefulSet
    ((SECONDS < deadline)) || fail "the StatefulSet did not create redis-0"
    sleep 0.5
  done
  "${k[@]}" wait -n host-check --for=condition=Ready pod/redis-0 --timeout=120s >/dev/null ||
    fail "redis-0 did not become Ready on the real node"
  [[ $("${k[@]}" exec -n host-check redis-0 -- redis-cli ping) == PONG ]] || fail "redis-0 does not answer PING"
}

# confinement_chains: the firewall chains exist and drop, and are jumped to
confinement_chains() {
  iptables -S BERTH-TESTENV-49 | grep -q -- '-j DROP' || fail "chain BERTH-TESTENV-49 has no DROP"
  iptables -S BERTH-TESTENV-49-IN | grep -q -- '-j DROP' || fail "chain BERTH-TESTENV-49-IN has no DROP"
  iptables -S FORWARD | grep -q -- '-j BERTH-TESTENV-49$' || fail "FORWARD does not jump to BERTH-TESTENV-49"
  iptables -S OUTPUT | grep -q -- '-j BERTH-TESTENV-49$' || fail "OUTPUT does not jump to BERTH-TESTENV-49"
  iptables -S INPUT | grep -q -- '-j BERTH-TESTENV-49-IN$' || fail "INPUT does not jump to BERTH-TESTENV-49-IN"
  iptables-save -t nat | grep -q MASQUERADE && fail "the host masquerades (iptables -t nat -S | grep MASQUERADE)"
  return 0
}

# kill_instance: SIGKILLs every process of the instance (components, shims, containers), as a
# session or machine that ends without `down` does; its run directory and host changes stay.
kill_instance() {
  local f p h
  for f in "$BERTH_TESTENV_DIR"/*.pid; do kill -KILL "$(<"$f")" 2>/dev/null || true; done
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/exe" 2>/dev/null)" == */containerd-shim-runc-v2 ]] || continue
    tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "-address $BERTH_TESTENV_DIR/" &&
      kill -KILL "${p#/proc/}" 2>/dev/null || true
  done
  for h in /sys/fs/cgroup/*/berth-testenv-49-*; do
    find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  done
  ip netns list | grep -q '^berth-testenv-49\b' || fail "killing the instance removed its netns (check is blind)"
}

main() {
  ((EUID == 0)) || fail "needs root (real nodes)"
  if "$TESTENV" status >/dev/null 2>&1; then "$TESTENV" down >/dev/null 2>&1; fi   # left by an earlier run
  snapshot "$OUT/before"
  note "starting an instance with 1 real node ($BERTH_TESTENV_DIR)"
  trap '"$TESTENV" down >/dev/null 2>&1 || true' EXIT
  "$TESTENV" up --real-nodes 1 >"$OUT/up.log" 2>&1 || { tail -n 30 "$OUT/up.log" >&2; fail "up --real-nodes 1 failed"; }
  eval "$("$TESTENV" env)"
  real_node_pod
  confinement_chains
  snapshot "$OUT/during"
  diff -q "$OUT/before/links" "$OUT/during/links" >/dev/null && fail "the snapshot sees no new link while up (check is blind)"
  grep -q kubelet "$OUT/during/processes" || fail "the snapshot sees no process of the instance while up (check is blind)"
  note "killing every process of the instance, then starting it again over what it left"
  kill_instance
  "$TESTENV" up --real-nodes 1 >"$OUT/up-again.log" 2>&1 ||
    { tail -n 30 "$OUT/up-again.log" >&2; fail "up over a killed instance failed"; }
  grep -q 'left by an instance whose processes are gone' "$OUT/up-again.log" ||
    fail "up did not notice the killed instance (see $OUT/up-again.log)"
  real_node_pod
  "$TESTENV" down >"$OUT/down.log" 2>&1 || { tail -n 30 "$OUT/down.log" >&2; fail "down failed"; }
  trap - EXIT
  snapshot "$OUT/after"
  if ! diff -r "$OUT/before" "$OUT/after" >"$OUT/diff"; then
    cat "$OUT/diff" >&2
    fail "the host differs after down (before: $OUT/before, after: $OUT/after)"
  fi
  note "ok: sysctls, links, addresses, routes, netns, iptables, mounts, cgroups, directories and processes as before"
  rm -rf "$OUT"
}

main "$@"
