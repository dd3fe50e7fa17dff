#!/usr/bin/env bash
# bench/scale.sh N [N...]: the operator scale benchmark (issue "The berth operator", item 6).
#
# For each N, on a fresh control plane of its own (scripts/testenv, separate ports and state):
#   berth:  N StatefulApps of 3 members applied at once, with `berth operator` running; time until
#           every app reports phase Ready; the operator's peak RSS (VmHWM) and its API requests/app.
#   native: the same N StatefulSets (as `berth render` prints them) applied at once with no
#           operator; time until every one has 3 ready replicas.
# Prints one Markdown table row per N. Needs: scripts/testenv build, cargo.
#
# BERTH_BENCH_ROLES=agent|exec (default: none) gives every app roles (leader, follower) and a role
# probe every 2 s: with `agent`, the operator runs with --agent-image, so every member gets the
# role agent (kwok marks its containers running and ready; no agent process runs on fake nodes,
# so this measures what the operator itself costs when agents own the roles); with `exec`, the
# operator execs every probe (kwok runs it on this machine). Then, after convergence, the
# operator's API requests are counted over BERTH_BENCH_IDLE seconds (default 60) while nothing
# changes, and reported per app per minute (watches are long requests: they count when opened).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export BERTH_TESTENV_DIR=${BERTH_BENCH_DIR:-/tmp/berth-bench}
export BERTH_TESTENV_ETCD_PORT=25790 BERTH_TESTENV_ETCD_PEER_PORT=25800 BERTH_TESTENV_APISERVER_PORT=18443
export BERTH_TESTENV_KCM_PORT=18257 BERTH_TESTENV_SCHEDULER_PORT=18259 BERTH_TESTENV_KWOK_PORT=18247
# Room for 1,000 apps x 3 members on the 3 fake nodes (kubelet's default is 110 pods per node).
export BERTH_TESTENV_NODE_PODS=1100
METRICS=127.0.0.1:18090
TIMEOUT=${BERTH_BENCH_TIMEOUT:-1800}
ROLES=${BERTH_BENCH_ROLES:-none}
IDLE=${BERTH_BENCH_IDLE:-60}
case $ROLES in none | agent | exec) ;; *) echo "BERTH_BENCH_ROLES: none, agent or exec, not $ROLES" >&2; exit 1 ;; esac

# shellcheck source=bench/lib.sh
source bench/lib.sh

# BERTH_BENCH_BIN=PATH measures that prebuilt berth instead of building this checkout (to compare
# two builds on the same machine, e.g. before and after a change).
if [[ -n ${BERTH_BENCH_BIN:-} ]]; then
  BERTH=$BERTH_BENCH_BIN
else
  cargo build --release --quiet --bin berth
  BERTH=$PWD/target/release/berth
  [[ -n ${CARGO_TARGET_DIR:-} ]] && BERTH=$CARGO_TARGET_DIR/release/berth
fi

# app_manifest I: a 3-member StatefulApp without volumes (so only controllers are measured).
app_manifest() {
  cat <<YAML
---
apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {name: app-$1, namespace: $2}
spec:
  parts:
  - name: db
    replicas: 3
    template: {spec: {containers: [{name: db, image: "registry.k8s.io/pause:3.10"}]}}
    state:
      topology:
        ports: [{name: db, port: 5432}]
YAML
  [[ $ROLES == none ]] && return
  cat <<YAML
        roles: [{name: leader, writable: true}, {name: follower}]
        roleProbe: {exec: [sh, -c, "echo follower"], periodSeconds: 2}
YAML
}

# operator_args: the role agent's image when agents own the roles (kwok pulls nothing).
operator_args() { [[ $ROLES == agent ]] && echo "--agent-image berth.local/berth-operator:bench"; true; }

# wait_count WHAT COMMAND TARGET: polls COMMAND (prints a number) until it reaches TARGET.
wait_count() {
  local what=$1 cmd=$2 target=$3 start=$SECONDS n
  while :; do
    n=$(eval "$cmd" 2>/dev/null || true)   # grep -c prints 0 and fails when nothing matches
    n=${n%%$'\n'*}
    n=${n:-0}
    ((n >= target)) && return 0
    ((SECONDS - start > TIMEOUT)) && { log "timed out waiting for $what ($n/$target)"; return 1; }
    sleep 1
  done
}


run_one() {
  local n=$1 i apps=/tmp/berth-bench-apps.yaml sts=/tmp/berth-bench-sts.yaml
  scripts/testenv down >/dev/null 2>&1 || true
  scripts/testenv up >/dev/null 2>&1
  eval "$(scripts/testenv env)"
  kubectl apply --server-side -f deploy/crd.yaml >/dev/null
  wait_count "the CRD" "kubectl get crd statefulapps.berth.io -o jsonpath='{.status.conditions[?(@.type==\"Established\")].status}' | grep -c True" 1
  kubectl create namespace bench-berth >/dev/null
  kubectl create namespace bench-native >/dev/null

  : >"$apps"; : >"$sts"
  for ((i = 0; i < n; i++)); do
    app_manifest "$i" bench-berth >>"$apps"
    app_manifest "$i" bench-native | "$BERTH" render /dev/stdin 2>/dev/null \
      | awk 'BEGIN{RS="---\n"; ORS=""} /kind: StatefulSet/ {print "---\n" $0}' >>"$sts"
  done

  # native baseline first, on the idle cluster
  log "N=$n native: applying $n StatefulSets"
  local t0 t1 native berth
  t0=$(now_ms)
  kubectl apply --server-side -f "$sts" >/dev/null
  wait_count "native ready" "kubectl get sts -n bench-native -o jsonpath='{range .items[*]}{.status.readyReplicas}{\"\\n\"}{end}' | grep -c '^3$'" "$n"
  t1=$(now_ms); native=$((t1 - t0))
  log "N=$n native: ${native} ms"
  kubectl delete namespace bench-native --wait=false >/dev/null

  # shellcheck disable=SC2046 # operator_args is words on purpose
  "$BERTH" operator --namespace bench-berth --metrics-addr "$METRICS" --health-addr 127.0.0.1:18091 \
    $(operator_args) >/tmp/berth-bench-operator.log 2>&1 &
  local op=$!
  trap 'kill $op 2>/dev/null || true' RETURN
  wait_count "operator metrics" "curl -sf http://$METRICS/metrics >/dev/null && echo 1" 1
  local before
  before=$(curl -s "http://$METRICS/metrics" | awk '/^berth_api_requests_total/ {print $2}')
  log "N=$n berth: applying $n StatefulApps"
  t0=$(now_ms)
  kubectl apply --server-side -f "$apps" >/dev/null
  wait_count "berth ready" "kubectl get sapp -n bench-berth -o jsonpath='{range .items[*]}{.status.phase}{\"\\n\"}{end}' | grep -c '^Ready$'" "$n"
  t1=$(now_ms); berth=$((t1 - t0))
  local requests rss
  requests=$(curl -s "http://$METRICS/metrics" | awk '/^berth_api_requests_total/ {print $2}')
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$op/status")
  log "N=$n berth: ${berth} ms, peak RSS ${rss} kB, $((requests - before)) API requests"
  # while nothing changes: requests over the idle window (and the peak RSS again after it)
  sleep "$IDLE"
  local idle
  idle=$(curl -s "http://$METRICS/metrics" | awk '/^berth_api_requests_total/ {print $2}')
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$op/status")
  log "N=$n berth: $((idle - requests)) API requests in ${IDLE} s idle; peak RSS ${rss} kB"
  printf '| %d | %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f |\n' "$n" "$ROLES" "$(bc -l <<<"$native/1000")" "$(bc -l <<<"$berth/1000")" \
    "$(bc -l <<<"$berth/$native")" "$(bc -l <<<"$rss/1024")" "$(bc -l <<<"($requests-$before)/$n")" \
    "$(bc -l <<<"($idle-$requests)*60/$IDLE/$n")"
  kill "$op" 2>/dev/null || true
  wait "$op" 2>/dev/null || true
  scripts/testenv down >/dev/null 2>&1 || true
}

echo "| apps (×3 members) | role probes | native StatefulSets: all ready (s) | berth: all Ready (s) | ratio | operator peak RSS (MiB) | API requests per app | idle API requests per app per minute |"
echo "|---|---|---|---|---|---|---|---|"
for n in "${@:-100}"; do run_one "$n"; done
