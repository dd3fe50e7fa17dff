#!/usr/bin/env bash
# bench/real-inplace.sh [MEMBERS] [ROUNDS]: in-place update against recreate with real
# containers, on the test control plane's real nodes (issue 14; the real-node twin of
# bench/inplace.sh, which runs on kwok).
#
# Needs the shared test control plane with real nodes running (`scripts/testenv up
# --real-nodes 2`; used, never started or stopped here) and cargo. For each round (default 1)
# and each podUpdatePolicy (ReCreate, then InPlaceIfPossible), in a fresh namespace with its
# own `berth operator` (release build, watching that namespace only): one StatefulApp of
# MEMBERS (default 30) members on the real nodes, no volumes, `podManagement: Parallel`, default
# update policy otherwise (Ordered, maxUnavailable 1). Each member is one container of
# berth.local/etcd:deb12 running only a shell that sleeps (and exits on SIGTERM), no probe: the
# image is the one operator_real_inplace.rs updates, the process as small as it gets. Once the
# app is Ready, its image changes to berth.local/etcd:deb12-tools (the same packages plus one,
# so another image ID) and the time runs until the app is Ready again with every member on the
# new revision (status currentRevision == updateRevision, MEMBERS updated; `kubectl wait`,
# watch-based). Afterwards it counts the members that kept their pod UID and their node, and
# those whose container reports the new image.
# Prints one Markdown table row per policy and round; the time to the first Ready (MEMBERS
# real pods started from nothing) goes to stderr. Namespaces are deleted afterwards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MEMBERS=${1:-30}
ROUNDS=${2:-1}
TIMEOUT=${BERTH_BENCH_TIMEOUT:-900}
OLD_IMAGE=berth.local/etcd:deb12 NEW_IMAGE=berth.local/etcd:deb12-tools
WORK=$(mktemp -d /tmp/berth-real-inplace.XXXXXX)
# shellcheck source=bench/lib.sh
source bench/lib.sh

eval "$(scripts/testenv env)"
real=$(kubectl get nodes -l berth.io/node-kind=real -o name | wc -l)
((real >= 2)) || { log "needs the test control plane with 2 real nodes (scripts/testenv up --real-nodes 2)"; exit 1; }
cargo build --release --quiet --bin berth
BERTH=${CARGO_TARGET_DIR:-$PWD/target}/release/berth
kubectl apply --server-side --force-conflicts -f deploy/crd.yaml >/dev/null
established='{.status.conditions[?(@.type=="Established")].status}'
until [[ $(kubectl get crd statefulapps.berth.io -o jsonpath="$established") == True ]]; do sleep 0.1; done

OPERATOR= NS=
# teardown: the app deleted while its operator runs (it removes the app's finalizer), then the
# operator stopped and the namespace deleted; the next run starts on nodes done with this one.
teardown() {
  if [[ -n $NS ]]; then
    kubectl delete sapp db -n "$NS" --ignore-not-found --timeout="${TIMEOUT}s" >/dev/null || true
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

# app_manifest POLICY IMAGE: MEMBERS members on the real nodes, in $NS.
app_manifest() {
  cat <<YAML
apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {name: db, namespace: $NS}
spec:
  parts:
  - name: db
    replicas: $MEMBERS
    podManagement: Parallel
    template:
      spec:
        nodeSelector: {berth.io/node-kind: real}
        tolerations: [{key: berth.io/node-kind, value: real, effect: NoSchedule}]
        containers:
        - name: db
          image: "$2"
          command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
    state: {topology: {ports: [{name: db, port: 5432}]}}
    update: {podUpdatePolicy: $1}
YAML
}

# rolled_out [OLD_REVISION]: the app is Ready at its generation with every member on its update
# revision (which is not OLD_REVISION).
rolled_out() {
  kubectl get sapp db -n "$NS" -o json | python3 -c '
import json, sys
a = json.load(sys.stdin)
s, p = a.get("status", {}), (a.get("status", {}).get("parts") or [{}])[0]
ok = (s.get("phase") == "Ready" and s.get("observedGeneration") == a["metadata"]["generation"]
      and p.get("updateRevision") != sys.argv[2]
      and p.get("currentRevision") == p.get("updateRevision") and p.get("updated") == int(sys.argv[1])
      and all(m.get("revision") == p.get("updateRevision") for m in p.get("members", [])))
sys.exit(0 if ok else 1)' "$MEMBERS" "${1:-}"
}

# pods: "name uid node image" per member, sorted (image: what its container runs).
pods() {
  kubectl get pods -n "$NS" -l app.kubernetes.io/instance=db -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.spec.nodeName} {.status.containerStatuses[0].image}{"\n"}{end}' | sort
}

# start POLICY: a fresh namespace, its operator, the app on the old image until rolled out.
start() {
  local t0
  kubectl delete namespace "$NS" --wait=true --ignore-not-found >/dev/null
  kubectl create namespace "$NS" >/dev/null
  "$BERTH" operator --namespace "$NS" --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 \
    2>"$WORK/operator-$NS.log" >/dev/null &
  OPERATOR=$!
  t0=$(now_ms)
  app_manifest "$1" "$OLD_IMAGE" | kubectl apply --server-side -f - >/dev/null
  wait_for "$NS to be Ready" "[[ \$(kubectl get sapp db -n $NS -o jsonpath='{.status.phase}') == Ready ]]"
  wait_for "$NS members" rolled_out
  log "$1: $MEMBERS real pods Ready after $(($(now_ms) - t0)) ms; per node: $(pods | awk '{ print $3 }' | sort | uniq -c | xargs)"
}

# step_times: per-member timing from the operator's events, in order: the median time between
# two members' replacements (ReCreate: `RollingUpdate`), or from an image patch to its gate
# opening (`InPlaceUpdate` → `InPlaceUpdated`) and from a gate opening to the next patch.
step_times() {
  kubectl get events.events.k8s.io -n "$NS" --sort-by=.eventTime \
    -o jsonpath='{range .items[*]}{.eventTime} {.reason}{"\n"}{end}' | python3 -c '
import datetime, statistics, sys
events = [(datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp(), r)
          for t, r in (l.split() for l in sys.stdin if len(l.split()) == 2) if t != "null"]
def median(pairs):
    return f"{statistics.median(pairs) * 1000:.0f} ms" if pairs else "-"
def spans(start, end):
    out, since = [], None
    for t, r in events:
        if r == start:
            since = t
        elif r == end and since is not None:
            out.append(t - since)
            since = None
    return out
recreated = [t for t, r in events if r == "RollingUpdate"]
between = median([b - a for a, b in zip(recreated, recreated[1:])])
patched, opened = median(spans("InPlaceUpdate", "InPlaceUpdated")), median(spans("InPlaceUpdated", "InPlaceUpdate"))
print(f"between recreations {between}, patch to gate open {patched}, gate open to next patch {opened} (medians)")'
}

run_policy() {
  local round=$1 policy=$2 t0 t1 before after kept_uid kept_node new_image revision
  NS=bench-real-$(tr '[:upper:]' '[:lower:]' <<<"$policy")-$round
  start "$policy"
  before=$(pods)
  revision=$(kubectl get sapp db -n "$NS" -o jsonpath='{.status.parts[0].updateRevision}')
  log "$policy round $round: changing the image of $MEMBERS members"
  t0=$(now_ms)
  app_manifest "$policy" "$NEW_IMAGE" | kubectl apply --server-side -f - >/dev/null
  wait_for "$NS new revision" "[[ \$(kubectl get sapp db -n $NS -o jsonpath='{.status.parts[0].updateRevision}') != $revision ]]"
  kubectl wait sapp/db -n "$NS" --for=jsonpath='{.status.parts[0].updated}'="$MEMBERS" --timeout="${TIMEOUT}s" >/dev/null
  kubectl wait sapp/db -n "$NS" --for=jsonpath='{.status.phase}'=Ready --timeout="${TIMEOUT}s" >/dev/null
  t1=$(now_ms)
  if ! rolled_out "$revision"; then
    wait_for "$NS rollout" "rolled_out $revision"
    t1=$(now_ms)
  fi
  after=$(pods)
  kept_uid=$(join <(cut -d' ' -f1,2 <<<"$before") <(cut -d' ' -f1,2 <<<"$after") | awk '$2 == $3' | wc -l)
  kept_node=$(join <(cut -d' ' -f1,3 <<<"$before") <(cut -d' ' -f1,3 <<<"$after") | awk '$2 == $3' | wc -l)
  new_image=$(awk -v image="$NEW_IMAGE" '$4 == image' <<<"$after" | wc -l)
  log "$policy round $round: $((t1 - t0)) ms, $kept_uid UIDs and $kept_node nodes kept, $new_image on $NEW_IMAGE"
  log "$policy round $round: $(step_times)"
  printf '| %s | %d | %.1f | %d/%d | %d/%d | %d/%d |\n' "$policy" "$MEMBERS" "$(bc -l <<<"($t1-$t0)/1000")" \
    "$kept_uid" "$MEMBERS" "$kept_node" "$MEMBERS" "$new_image" "$MEMBERS"
  teardown
}

echo "| podUpdatePolicy | members | image change: all updated and Ready (s) | pod UIDs kept | nodes kept | containers on the new image |"
echo "|---|---|---|---|---|---|"
for ((round = 1; round <= ROUNDS; round++)); do
  run_policy "$round" ReCreate
  run_policy "$round" InPlaceIfPossible
done
