#!/usr/bin/env bash
# bench/inplace.sh [MEMBERS] [ROUNDS]: in-place update against recreate on the test control
# plane (issue 6, second benchmark).
#
# On a fresh control plane of its own (scripts/testenv, separate ports and state), with
# `berth operator` (release build) running: for each round and each podUpdatePolicy (ReCreate,
# then InPlaceIfPossible), one StatefulApp of MEMBERS (default 30) members in its own namespace,
# default update policy otherwise (Ordered, maxUnavailable 1). Once it is Ready, its image
# changes, and the time runs until the app is Ready again with every member on the new revision
# (status currentRevision == updateRevision, MEMBERS updated). Afterwards it counts the members
# that kept their pod UID and their node.
# Prints one Markdown table row per policy and round. Needs: scripts/testenv build, cargo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MEMBERS=${1:-30}
ROUNDS=${2:-1}
export BERTH_TESTENV_DIR=${BERTH_BENCH_DIR:-/tmp/berth-bench-inplace}
export BERTH_TESTENV_ETCD_PORT=26790 BERTH_TESTENV_ETCD_PEER_PORT=26800 BERTH_TESTENV_APISERVER_PORT=19443
export BERTH_TESTENV_KCM_PORT=19257 BERTH_TESTENV_SCHEDULER_PORT=19259 BERTH_TESTENV_KWOK_PORT=19247
export BERTH_TESTENV_KWOK_SERVER_PORT=19250
TIMEOUT=${BERTH_BENCH_TIMEOUT:-900}

# shellcheck source=bench/lib.sh
source bench/lib.sh

cargo build --release --quiet --bin berth
BERTH=${CARGO_TARGET_DIR:-$PWD/target}/release/berth

# app_manifest NAMESPACE POLICY IMAGE: MEMBERS members without volumes (so the rollout, not
# kwok's volume binding, is measured).
app_manifest() {
  cat <<YAML
apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {name: db, namespace: $1}
spec:
  parts:
  - name: db
    replicas: $MEMBERS
    podManagement: Parallel
    template: {spec: {containers: [{name: db, image: "$3"}]}}
    state: {topology: {ports: [{name: db, port: 5432}]}}
    update: {podUpdatePolicy: $2}
YAML
}

# rolled_out NAMESPACE [OLD_REVISION]: the app is Ready at its generation with every member on
# its update revision (which is not OLD_REVISION).
rolled_out() {
  kubectl get sapp db -n "$1" -o json | python3 -c '
import json, sys
a = json.load(sys.stdin)
s, p = a.get("status", {}), (a.get("status", {}).get("parts") or [{}])[0]
ok = (s.get("phase") == "Ready" and s.get("observedGeneration") == a["metadata"]["generation"]
      and p.get("updateRevision") != sys.argv[2]
      and p.get("currentRevision") == p.get("updateRevision") and p.get("updated") == int(sys.argv[1])
      and all(m.get("revision") == p.get("updateRevision") for m in p.get("members", [])))
sys.exit(0 if ok else 1)' "$MEMBERS" "${2:-}"
}

# pods NAMESPACE: "name uid node" per member, sorted.
pods() {
  kubectl get pods -n "$1" -l app.kubernetes.io/instance=db \
    -o jsonpath='{range .items[*]}{.metadata.name} {.metadata.uid} {.spec.nodeName}{"\n"}{end}' | sort
}

run_policy() {
  local round=$1 policy=$2 ns t0 t1 before after kept_uid kept_node revision
  ns=bench-$(tr '[:upper:]' '[:lower:]' <<<"$policy")-$round
  kubectl create namespace "$ns" >/dev/null
  app_manifest "$ns" "$policy" registry.k8s.io/pause:3.9 | kubectl apply --server-side -f - >/dev/null
  wait_for "$ns to be Ready" "[[ \$(kubectl get sapp db -n $ns -o jsonpath='{.status.phase}') == Ready ]]"
  wait_for "$ns members" "rolled_out $ns"
  before=$(pods "$ns")
  revision=$(kubectl get sapp db -n "$ns" -o jsonpath='{.status.parts[0].updateRevision}')
  log "$policy round $round: changing the image of $MEMBERS members"
  t0=$(now_ms)
  app_manifest "$ns" "$policy" registry.k8s.io/pause:3.10 | kubectl apply --server-side -f - >/dev/null
  # kubectl wait follows a watch, so the end is seen within milliseconds of the status write.
  wait_for "$ns new revision" "[[ \$(kubectl get sapp db -n $ns -o jsonpath='{.status.parts[0].updateRevision}') != $revision ]]"
  kubectl wait sapp/db -n "$ns" --for=jsonpath='{.status.parts[0].updated}'="$MEMBERS" --timeout="${TIMEOUT}s" >/dev/null
  kubectl wait sapp/db -n "$ns" --for=jsonpath='{.status.phase}'=Ready --timeout="${TIMEOUT}s" >/dev/null
  t1=$(now_ms)
  if ! rolled_out "$ns" "$revision"; then
    wait_for "$ns rollout" "rolled_out $ns $revision"
    t1=$(now_ms)
  fi
  after=$(pods "$ns")
  kept_uid=$(join <(cut -d' ' -f1,2 <<<"$before") <(cut -d' ' -f1,2 <<<"$after") | awk '$2 == $3' | wc -l)
  kept_node=$(join <(cut -d' ' -f1,3 <<<"$before") <(cut -d' ' -f1,3 <<<"$after") | awk '$2 == $3' | wc -l)
  log "$policy round $round: $((t1 - t0)) ms, $kept_uid UIDs and $kept_node nodes kept"
  printf '| %s | %d | %.1f | %d/%d | %d/%d |\n' "$policy" "$MEMBERS" "$(bc -l <<<"($t1-$t0)/1000")" \
    "$kept_uid" "$MEMBERS" "$kept_node" "$MEMBERS"
  kubectl delete namespace "$ns" --wait=false >/dev/null
}

scripts/testenv down >/dev/null 2>&1 || true
scripts/testenv up >/dev/null
eval "$(scripts/testenv env)"
kubectl apply --server-side -f deploy/crd.yaml >/dev/null
wait_for "the CRD" "kubectl wait --for condition=Established crd/statefulapps.berth.io --timeout 1s"
"$BERTH" operator --metrics-addr 127.0.0.1:19090 --health-addr 127.0.0.1:19091 >/tmp/berth-bench-inplace-operator.log 2>&1 &
OPERATOR=$!
trap 'kill $OPERATOR 2>/dev/null || true; scripts/testenv down >/dev/null 2>&1 || true' EXIT

echo "| podUpdatePolicy | members | image change: all updated and Ready (s) | pod UIDs kept | nodes kept |"
echo "|---|---|---|---|---|"
for ((round = 1; round <= ROUNDS; round++)); do
  run_policy "$round" ReCreate
  run_policy "$round" InPlaceIfPossible
done
