#!/usr/bin/env bash
# bench/real-agent.sh [ROUNDS]: how fast a real leader change reaches the role labels and the
# role-selecting `write` Service, with the role agent and without it, on the test control plane's
# real nodes (issue 15, item 4; goal: within one probe period + 1 s).
#
# Needs the shared test control plane with real nodes running (`scripts/testenv up
# --real-nodes 2`; it is used, never started or stopped here) and cargo. For each mode, in a
# fresh namespace with its own `berth operator` (release build, watching that namespace only):
#   agent: the operator started with `--agent-image` (the release binary's operator image, from
#          `scripts/testenv operator-image`): each member's `berth-agent` sidecar runs the role
#          probe in its pod every period and labels on change;
#   exec:  the operator without it: it runs every member's role probe through `pods/exec`.
# examples/redis.yaml as shipped (3 members, role probe every 2 s), resolved with the delivery
# values of tools/testenv/testdata/real-node-redis.values.yaml by the example binary
# `resolved_app`, as bench/real-rollout.sh does. Once Ready with one `master` and two `slave`
# labels: 60 s with nothing changing, counting the operator's requests to the API (its
# `berth_api_requests` metric: with the agent, what the operator still sends; without it, mostly
# the probes' execs); then ROUNDS (default 5) failovers by hand, no operator action, each to the
# next member after the master (by ordinal, rotating): one `kubectl exec` into the new master
# runs redis-cli `REPLICAOF NO ONE` on it and `REPLICAOF <its pod IP> 6379` on the two others.
# Each failover is timed from just before that exec (its own ~100-300 ms are inside the times)
#   (a) until the pods' labels show the new master as the only `master`, the others `slave`;
#   (b) until the `redis-write` EndpointSlice(s) list exactly the new master's pod IP as a ready
#       endpoint (what kube-proxy then applies, at most once a second by default, is not
#       included: no traffic goes through the Service here).
# Both are read from `kubectl get --watch` streams of the pods and the slices, each event stamped
# on arrival (resolution: a few ms after the API server's write). Between failovers, 3-5 s
# (random, so failovers fall anywhere in the probe period).
# Prints a Markdown table row per mode: rounds, labels and write Service median/max (ms), the
# operator's API requests in the quiet 60 s; each failover's times go to stderr. Namespaces are
# deleted afterwards. Traffic stays on 127.0.0.1 and the test cluster's own links.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${1:-5}
TIMEOUT=${BERTH_BENCH_TIMEOUT:-300}
QUIET=60
WORK=$(mktemp -d /tmp/berth-real-agent.XXXXXX)
# shellcheck source=bench/lib.sh
source bench/lib.sh

eval "$(scripts/testenv env)"
real=$(kubectl get nodes -l berth.io/node-kind=real -o name | wc -l)
((real >= 2)) || { log "needs the test control plane with 2 real nodes (scripts/testenv up --real-nodes 2)"; exit 1; }
cargo build --release --quiet --bin berth --example resolved_app
TARGET=${CARGO_TARGET_DIR:-$PWD/target}/release
BERTH=$TARGET/berth RESOLVE=$TARGET/examples/resolved_app
AGENT_IMAGE=$(scripts/testenv operator-image "$BERTH")
log "agent image $AGENT_IMAGE"
kubectl apply --server-side --force-conflicts -f deploy/crd.yaml >/dev/null
established='{.status.conditions[?(@.type=="Established")].status}'
until [[ $(kubectl get crd statefulapps.berth.io -o jsonpath="$established") == True ]]; do sleep 0.1; done

OPERATOR= NS= WATCHERS=()
# teardown: the watches stopped, the app deleted while its operator runs (it removes the app's
# finalizer), then the operator stopped and the namespace deleted.
teardown() {
  local pid
  for pid in "${WATCHERS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${WATCHERS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n $NS ]]; then
    kubectl delete sapp redis -n "$NS" --ignore-not-found --timeout="${TIMEOUT}s" >/dev/null || true
  fi
  if [[ -n $OPERATOR ]]; then
    kill "$OPERATOR" 2>/dev/null && wait "$OPERATOR" 2>/dev/null || true
  fi
  if [[ -n $NS ]]; then
    kubectl delete namespace "$NS" --timeout="${TIMEOUT}s" >/dev/null || true
  fi
  OPERATOR= NS= WATCHERS=()
}
trap 'teardown; rm -rf "$WORK"' EXIT

# watch.py NS KIND SELECTOR: `kubectl get --watch` of KIND, one line per event on stdout, stamped
# when it arrives: "<unix time> <type> <name> <summary>", the summary being a pod's role label
# ("-" without one) or a slice's ready addresses (comma-separated, "-" for none).
cat >"$WORK/watch.py" <<'PY'
import json, os, signal, subprocess, sys, time
ns, kind, selector = sys.argv[1:4]
p = subprocess.Popen(["kubectl", "get", kind, "-n", ns, "-l", selector, "--watch",
                      "--output-watch-events", "-o", "json"], stdout=subprocess.PIPE)
signal.signal(signal.SIGTERM, lambda *_: (p.kill(), sys.exit(0)))
decoder, buf = json.JSONDecoder(), ""
def summary(o):
    if o.get("kind") == "Pod":
        return (o["metadata"].get("labels") or {}).get("berth.io/role") or "-"
    ready = sorted(a for e in o.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
                   for a in e.get("addresses") or [])
    return ",".join(ready) or "-"
while True:
    chunk = os.read(p.stdout.fileno(), 1 << 16)
    if not chunk:
        sys.exit(p.wait() or 1)
    at = time.time()
    buf += chunk.decode()
    while True:
        buf = buf.lstrip()
        try:
            event, end = decoder.raw_decode(buf)
        except ValueError:
            break
        buf = buf[end:]
        o = event["object"]
        print(f"{at:.6f} {event['type']} {o['metadata']['name']} {summary(o)}", flush=True)
PY

# since.py LOG T0 WANT: replays a watch log; prints the ms from T0 to the first event at or after
# T0 after which every object's summary is as WANT says (exit 1 if none yet). WANT: "pods:P" (pod
# P `master`, every other pod `slave`, at least 3 pods) or "slices:IP" (the ready addresses of
# all slices together are exactly IP).
cat >"$WORK/since.py" <<'PY'
import sys
log, t0, want = sys.argv[1], float(sys.argv[2]), sys.argv[3]
what, target = want.split(":", 1)
def holds(state):
    if what == "pods":
        return len(state) >= 3 and all(r == ("master" if p == target else "slave")
                                       for p, r in state.items())
    ready = set(a for s in state.values() if s != "-" for a in s.split(","))
    return ready == {target}
state = {}
for line in open(log):
    parts = line.split()
    if len(parts) != 4:
        continue
    at, kind, name, summary = float(parts[0]), parts[1], parts[2], parts[3]
    if kind == "DELETED":
        state.pop(name, None)
    elif kind in ("ADDED", "MODIFIED"):
        state[name] = summary
    if at >= t0 and holds(state):
        print(f"{(at - t0) * 1000:.0f}")
        sys.exit(0)
sys.exit(1)
PY

# roles: "pod role" per member ("-" without a role label).
roles() {
  kubectl get pods -n "$NS" -l app.kubernetes.io/instance=redis \
    -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.labels.berth\.io/role}{"\n"}{end}' |
    awk '{ print $1, ($2 == "" ? "-" : $2) }'
}
labelled() { [[ $(roles | awk '$2 == "master"' | wc -l) == 1 && $(roles | awk '$2 == "slave"' | wc -l) == 2 ]]; }
master() { roles | awk '$2 == "master" { print $1 }'; }
pod_ip() { kubectl get pod "$1" -n "$NS" -o jsonpath='{.status.podIP}'; }
api_requests() { curl -sf "http://$METRICS/metrics" | awk '/^berth_api_requests_total / { print $2 }'; }

# median.py MS...: "median / max".
median() { python3 -c 'import statistics, sys; v = [float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.0f} / {max(v):.0f}")' "$@"; }

run() {
  local mode=$1 round master new ip others t0 t1 label write quiet0 quiet1 pods labels=() writes=()
  NS=bench-real-agent-$mode
  kubectl delete namespace "$NS" --wait=true --ignore-not-found >/dev/null
  kubectl create namespace "$NS" >/dev/null
  local extra=()
  [[ $mode == agent ]] && extra=(--agent-image "$AGENT_IMAGE")
  METRICS=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$BERTH" operator --namespace "$NS" --metrics-addr "$METRICS" --health-addr 127.0.0.1:0 \
    "${extra[@]}" 2>"$WORK/operator-$mode.log" >/dev/null &
  OPERATOR=$!
  "$RESOLVE" examples/redis.yaml "$NS" tools/testenv/testdata/real-node-redis.values.yaml |
    kubectl apply --server-side -f - >/dev/null
  wait_for "$NS Ready with 3 labelled members" \
    "[[ \$(kubectl get sapp redis -n $NS -o jsonpath='{.status.summary.ready}') == 3/3 ]] && labelled"
  mapfile -t pods < <(roles | awk '{ print $1 }' | sort -V)
  declare -A ips=()
  for p in "${pods[@]}"; do ips[$p]=$(pod_ip "$p"); done
  if [[ $mode == agent ]]; then
    for p in "${pods[@]}"; do
      kubectl get pod "$p" -n "$NS" -o jsonpath='{.spec.initContainers[*].name}' | grep -qw berth-agent ||
        { log "$p has no berth-agent sidecar"; return 1; }
    done
  fi

  log "$mode: Ready, master $(master); $QUIET s with nothing changing"
  quiet0=$(api_requests)
  sleep "$QUIET"
  quiet1=$(api_requests)

  python3 "$WORK/watch.py" "$NS" pods app.kubernetes.io/instance=redis >"$WORK/pods-$mode.log" &
  WATCHERS+=($!)
  python3 "$WORK/watch.py" "$NS" endpointslices kubernetes.io/service-name=redis-write >"$WORK/slices-$mode.log" &
  WATCHERS+=($!)
  master=$(master)
  wait_for "the watches' first events" \
    "python3 $WORK/since.py $WORK/pods-$mode.log 0 pods:$master && python3 $WORK/since.py $WORK/slices-$mode.log 0 slices:${ips[$master]}"

  for round in $(seq "$ROUNDS"); do
    master=$(master)
    # the next member after the master, by ordinal
    new=${pods[0]}
    for i in "${!pods[@]}"; do
      [[ ${pods[$i]} == "$master" ]] && new=${pods[$(((i + 1) % ${#pods[@]}))]}
    done
    ip=${ips[$new]}
    others=()
    for p in "${pods[@]}"; do [[ $p == "$new" ]] || others+=("${ips[$p]}"); done
    t0=$EPOCHREALTIME
    kubectl exec -n "$NS" "$new" -c redis -- sh -c \
      "redis-cli -h \"\$BERTH_POD_IP\" REPLICAOF NO ONE && redis-cli -h ${others[0]} REPLICAOF $ip 6379 && redis-cli -h ${others[1]} REPLICAOF $ip 6379" \
      >"$WORK/failover.out"
    t1=$EPOCHREALTIME
    [[ $(grep -c '^OK$' "$WORK/failover.out") == 3 ]] || { log "failover to $new: $(tr '\n' ' ' <"$WORK/failover.out")"; return 1; }
    wait_for "$new labelled master, the others slave" "python3 $WORK/since.py $WORK/pods-$mode.log $t0 pods:$new"
    wait_for "redis-write's slice on $new ($ip) alone" "python3 $WORK/since.py $WORK/slices-$mode.log $t0 slices:$ip"
    label=$(python3 "$WORK/since.py" "$WORK/pods-$mode.log" "$t0" "pods:$new")
    write=$(python3 "$WORK/since.py" "$WORK/slices-$mode.log" "$t0" "slices:$ip")
    labels+=("$label") writes+=("$write")
    log "$mode round $round: $master → $new: exec $(python3 -c "print(f'{($t1 - $t0) * 1000:.0f}')") ms, labels $label ms, write Service $write ms"
    [[ $(master) == "$new" ]] || { log "the labels moved on from $new"; return 1; }
    sleep "$(python3 -c 'import random; print(f"{random.uniform(3, 5):.2f}")')"
  done
  if [[ $mode == agent ]]; then
    for p in "${pods[@]}"; do
      kubectl logs -n "$NS" "$p" -c berth-agent 2>&1 | grep -iE 'warn|error' | sed "s/^/    $p: /" >&2 || true
    done
  fi
  grep -iE 'warn|error' "$WORK/operator-$mode.log" | tail -n 5 | sed 's/^/    operator: /' >&2 || true
  echo "| $mode | $ROUNDS | $(median "${labels[@]}") | $(median "${writes[@]}") | $((${quiet1%.*} - ${quiet0%.*})) |"
  teardown
}

echo "| mode | failovers | labels: median / max (ms) | write Service slice: median / max (ms) | operator API requests in $QUIET s unchanged |"
echo "|---|---:|---:|---:|---:|"
for mode in agent exec; do
  run "$mode"
done
