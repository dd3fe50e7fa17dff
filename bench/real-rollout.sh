#!/usr/bin/env bash
# bench/real-rollout.sh [ROUNDS]: write availability during a rolling config change under
# `berth operator`, on the test control plane's real nodes (issue 14; the Kubernetes twin of
# bench/rollout.sh).
#
# Needs the shared test control plane with real nodes running (`scripts/testenv up
# --real-nodes 2`; it is used, never started or stopped here) and cargo. For each round (default
# 2) and each update strategy (RoleAware, whose switchover action moves the master before its
# update, then Ordered: highest ordinal first, the master's pod recreated in turn), in a fresh
# namespace with its own `berth operator` (release build, watching that namespace only):
#   examples/redis.yaml (3 members, a master and two replicas, real volumes) with the strategy
#   added, resolved with the delivery values of tools/testenv/testdata/real-node-redis.values.yaml
#   (the berth.local image, the real nodes' label and taint) by the example binary
#   `resolved_app`, as the operator's real-node tests do;
#   once Ready with one `master` and two `slave` labels, a client pod on a real node
#   (tools/testenv/testdata/redis-writer.sh) writes a numbered key every 5 ms through the
#   role-selecting `write` Service, recording each acknowledged write and each error;
#   a config change (`extraConfig=slowlog-max-len 256`) is applied, and the time runs until the
#   app is Ready at its generation with every member on the new revision (`kubectl wait`);
#   2 s later the client stops and every acknowledged key is looked up on the master.
# Prints a Markdown table row per run: acknowledged writes, failed writes, the longest gap
# between acknowledged writes overlapping the rollout, total outage time (each run of failed
# writes, from the acknowledged write before it to the one after), the rollout duration,
# acknowledged writes lost, the masters before and after. The rollout's steps (operator events)
# and each outage's failures by reply go to stderr. Namespaces are deleted afterwards. Traffic
# stays on 127.0.0.1 and the test cluster's own links.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${1:-2}
TIMEOUT=${BERTH_BENCH_TIMEOUT:-300}
WORK=$(mktemp -d /tmp/berth-real-rollout.XXXXXX)
# shellcheck source=bench/lib.sh
source bench/lib.sh

eval "$(scripts/testenv env)"
real=$(kubectl get nodes -l berth.io/node-kind=real -o name | wc -l)
((real >= 2)) || { log "needs the test control plane with 2 real nodes (scripts/testenv up --real-nodes 2)"; exit 1; }
cargo build --release --quiet --bin berth --example resolved_app
TARGET=${CARGO_TARGET_DIR:-$PWD/target}/release
BERTH=$TARGET/berth RESOLVE=$TARGET/examples/resolved_app
kubectl apply --server-side --force-conflicts -f deploy/crd.yaml >/dev/null
established='{.status.conditions[?(@.type=="Established")].status}'
until [[ $(kubectl get crd statefulapps.berth.io -o jsonpath="$established") == True ]]; do sleep 0.1; done

OPERATOR= NS=
# teardown: the app deleted while its operator runs (it removes the app's finalizer), then the
# operator stopped and the namespace deleted; the next run starts on nodes done with this one.
teardown() {
  if [[ -n $NS ]]; then
    kubectl delete sapp redis -n "$NS" --ignore-not-found --timeout="${TIMEOUT}s" >/dev/null || true
  fi
  if [[ -n $OPERATOR ]]; then
    kill "$OPERATOR" 2>/dev/null && wait "$OPERATOR" 2>/dev/null || true
  fi
  if [[ -n $NS ]]; then
    kubectl delete namespace "$NS" --timeout="${TIMEOUT}s" >/dev/null || true
  fi
  OPERATOR= NS=
}
trap 'teardown; rm -rf "$WORK"' EXIT

# report.py WRITES HELD STRATEGY T0 T1 BEFORE AFTER: the table row of one run, from the writer's
# log ("ack|err <n> <unix time> [reply]") and the keys the master holds.
cat >"$WORK/report.py" <<'PY'
import sys
log, held, strategy, t0, t1, before, after = sys.argv[1:8]
t0, t1 = float(t0), float(t1)
rows = [l.rstrip("\n").split(" ", 3) for l in open(log) if l.startswith(("ack ", "err "))]
acked = [(float(r[2]), r[1]) for r in rows if r[0] == "ack"]
failed = [r for r in rows if r[0] == "err"]
# Longest gap between consecutive acknowledged writes that overlaps the rollout.
gap = max((b - a for (a, _), (b, _) in zip(acked, acked[1:]) if b >= t0 and a <= t1), default=0.0)
# Outages: each run of failed writes, from the acknowledged write before it to the one after.
# Each failure is named by its reply's first word ("no reply": refused, closed or timed out).
outages, last_ack, replies = [], None, {}
for r in rows:
    at = float(r[2])
    if r[0] == "err":
        reply = r[3].split()[0] if len(r) > 3 and r[3].strip() else "no reply"
        replies[reply] = replies.get(reply, 0) + 1
    else:
        if replies and last_ack is not None:
            outages.append((at - last_ack, replies))
        last_ack, replies = at, {}
for seconds, replies in outages:
    named = ", ".join(f"{n} {reply}" for reply, n in replies.items())
    print(f"    outage {seconds * 1000:.0f} ms: {sum(replies.values())} failed ({named})", file=sys.stderr)
keys = set(l.strip() for l in open(held) if l.strip())
lost = sum(1 for _, n in acked if f"w:{n}" not in keys)
outage = sum(o[0] for o in outages)
print(f"| {strategy} | {len(acked)} | {len(failed)} | {gap * 1000:.0f} | {outage * 1000:.0f} | "
      f"{t1 - t0:.1f} | {lost} | {before} → {after} |", flush=True)
PY

# app STRATEGY [KEY=VALUE...]: the example with the update strategy, resolved for namespace $NS.
app() {
  local strategy=$1; shift
  sed "0,/^      replicas: 3\$/s//      replicas: 3\n      update:\n        strategy: $strategy/" \
    examples/redis.yaml >"$WORK/redis.yaml"
  "$RESOLVE" "$WORK/redis.yaml" "$NS" tools/testenv/testdata/real-node-redis.values.yaml "$@"
}

# roles: "pod role" per member ("-" without a role label).
roles() {
  kubectl get pods -n "$NS" -l app.kubernetes.io/instance=redis \
    -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.labels.berth\.io/role}{"\n"}{end}' |
    awk '{ print $1, ($2 == "" ? "-" : $2) }'
}
labelled() { [[ $(roles | awk '$2 == "master"' | wc -l) == 1 && $(roles | awk '$2 == "slave"' | wc -l) == 2 ]]; }
master() { roles | awk '$2 == "master" { print $1 }'; }

# rolled_out OLD_REVISION: Ready at its generation, every member on a revision that is not OLD.
rolled_out() {
  kubectl get sapp redis -n "$NS" -o json | python3 -c '
import json, sys
a = json.load(sys.stdin)
s = a.get("status", {})
p = (s.get("parts") or [{}])[0]
ok = (s.get("phase") == "Ready" and s.get("observedGeneration") == a["metadata"]["generation"]
      and p.get("updateRevision") not in (None, sys.argv[1])
      and p.get("currentRevision") == p.get("updateRevision")
      and all(m.get("revision") == p.get("updateRevision") for m in p.get("members", [])))
sys.exit(0 if ok else 1)' "${1:-}"
}

# writer_pod: the client pod, privileged (it sets its own tcp_syn_retries), on a real node.
writer_pod() {
  python3 - "$NS" tools/testenv/testdata/redis-writer.sh <<'PY'
import json, sys
ns, script = sys.argv[1], open(sys.argv[2]).read()
print(json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "writer", "namespace": ns},
  "spec": {"nodeSelector": {"berth.io/node-kind": "real"},
    "tolerations": [{"key": "berth.io/node-kind", "value": "real", "effect": "NoSchedule"}],
    "terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
    "containers": [{"name": "writer", "image": "berth.local/redis:deb12", "imagePullPolicy": "Never",
      "command": ["bash", "-c", script], "securityContext": {"privileged": True}}]}}))
PY
}
writes() { kubectl exec -n "$NS" writer -- cat /tmp/writes; }

# acked_on_master MASTER: the w:* keys the master holds, one a line.
acked_on_master() {
  kubectl exec -n "$NS" "$1" -- sh -c 'redis-cli -h "$BERTH_POD_IP" --scan --pattern "w:*"'
}

# steps: the rollout's operator events in order (reason and note).
steps() {
  kubectl get events.events.k8s.io -n "$NS" --sort-by=.eventTime \
    -o jsonpath='{range .items[*]}{.eventTime} {.reason}: {.note}{"\n"}{end}' |
    grep -E 'RollingUpdate|Switchover|InPlace' || true
}

run() {
  local round=$1 strategy=$2 revision t0 t1 before after
  NS=bench-real-rollout-$(tr '[:upper:]' '[:lower:]' <<<"$strategy")-$round
  kubectl delete namespace "$NS" --wait=true --ignore-not-found >/dev/null
  kubectl create namespace "$NS" >/dev/null
  "$BERTH" operator --namespace "$NS" --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 \
    2>"$WORK/operator-$NS.log" >/dev/null &
  OPERATOR=$!
  app "$strategy" | kubectl apply --server-side -f - >/dev/null
  wait_for "$NS Ready with 3 labelled members" \
    "[[ \$(kubectl get sapp redis -n $NS -o jsonpath='{.status.summary.ready}') == 3/3 ]] && labelled"
  before=$(master)
  revision=$(kubectl get sapp redis -n "$NS" -o jsonpath='{.status.parts[0].updateRevision}')
  writer_pod | kubectl apply -f - >/dev/null
  wait_for "the writer's first acknowledged write" "writes | grep -q '^ack '"
  sleep 2
  log "round $round, $strategy: rolling out a config change (master $before)"
  t0=$(now)
  app "$strategy" "extraConfig=slowlog-max-len 256" | kubectl apply --server-side -f - >/dev/null
  # kubectl wait follows a watch, so the end is seen within milliseconds of the status write.
  wait_for "$NS new revision" "[[ \$(kubectl get sapp redis -n $NS -o jsonpath='{.status.parts[0].updateRevision}') != $revision ]]"
  kubectl wait sapp/redis -n "$NS" --for=jsonpath='{.status.parts[0].updated}'=3 --timeout="${TIMEOUT}s" >/dev/null
  kubectl wait sapp/redis -n "$NS" --for=jsonpath='{.status.phase}'=Ready --timeout="${TIMEOUT}s" >/dev/null
  t1=$(now)
  if ! rolled_out "$revision"; then
    wait_for "$NS rolled out" "rolled_out $revision"
    t1=$(now)
  fi
  wait_for "one master" labelled
  after=$(master)
  sleep 2
  wait_for "the writer's latest write acknowledged" "writes | tail -n 1 | grep -q '^ack '"
  kubectl exec -n "$NS" writer -- touch /tmp/stop
  wait_for "the writer to stop" "writes | tail -n 1 | grep -qx stopped"
  writes >"$WORK/writes.log"
  acked_on_master "$after" >"$WORK/held.txt"
  steps | sed 's/^/    /' >&2
  python3 "$WORK/report.py" "$WORK/writes.log" "$WORK/held.txt" "$strategy" "$t0" "$t1" "$before" "$after"
  teardown
}

echo "| strategy | acknowledged writes | failed writes | longest write gap (ms) | outage time (ms) | rollout (s) | acknowledged writes lost | master before → after |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
for round in $(seq "$ROUNDS"); do
  for strategy in RoleAware Ordered; do
    run "$round" "$strategy"
  done
done
