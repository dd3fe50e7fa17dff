#!/usr/bin/env bash
# bench/real-backup.sh [MIB]: backup and restore throughput under `berth operator` on the test
# control plane's real nodes (issue 12; the Kubernetes twin of bench/backup.sh), with either
# carrier of the bytes (BERTH_BENCH_CARRIER):
#   member (default): `--agent-image` (the release binary's operator image) and
#                     `repository.carrier: Member`: `berth agent transfer` in the member's pod
#                     moves the bytes straight between the pod and versitygw, which runs in the
#                     nodes' network namespace (scripts/testenv's, on BERTH_TESTENV_POD_NET_IP),
#                     reachable from the pods and this host; the restore streams
#                     (`restoreInput: Stdin`)
#   operator:         no agent, versitygw on 127.0.0.1, the operator carries the bytes through the
#                     `pods/exec` stream (`restoreInput: File`)
# and either restore action (BERTH_BENCH_RESTORE):
#   stream (default): `cat > /data/restored`, fed as the carrier says above
#   link:             `restoreInput: File` and `ln "$BERTH_RESTORE_FILE" /data/restored`: the data
#                     lands in the member's volume and the action links it into place, so the
#                     bytes cross the disk once, as in the physical download (berth's own cost,
#                     without a copying action's)
#
# Needs the shared test control plane with real nodes running (`scripts/testenv up
# --real-nodes 2`; used, never started or stopped here), scripts/testenv build (versitygw) and
# cargo. In a fresh namespace, a release `berth operator` watching only it. Then:
#   fill:               a one-member app on a real node gets MIB (default 1024) MiB of random
#                       data in its volume (written inside the pod)
#   exec limit:         `kubectl exec cat` of that file to /dev/null on this host: the exec
#                       stream alone (kubelet -> API server -> client)
# and BERTH_BENCH_ROUNDS (default 3) rounds of, one after the other:
#   physical upload:    s3copy up (berth-backup's own client) of the same number of bytes
#                       straight to the bucket: with the member carrier from the member's pod
#                       (the binary copied into it, reading its volume), else from a local file
#                       on this host (where the operator runs); s3copy's own time
#   backup:             a StatefulAppBackup whose action is `cat FILE`, from creation to
#                       Succeeded; the transfer alone, as its BackupSucceeded event says; and
#                       with the member carrier the pod's own time, as the event says too
#   physical download:  s3copy down of that backup's data, in the pod to its volume (member) or
#                       on this host to a local file (operator)
#   restore:            a new app with `restoreFrom` that backup, from creation to
#                       status.restore Succeeded (pod start, init containers, the transfer, the
#                       restore action `cat > volume`), its sha256 checked; the member's
#                       transfer alone, as its MemberRestored event says (from the operator's
#                       exec to the answer), and with the member carrier the pod's own time;
#                       then the restored app and its claim are deleted
# and prints, for each step, every round's MiB/s and ratio to that round's physical limit, the
# medians, and the peak RSS of the process carrying the bytes (the operator's VmHWM; with the
# member carrier, the highest VmHWM of `berth agent transfer` sampled every 50 ms from /proc on
# this host, where the nodes' containers run) as a Markdown table. Rounds, not one run, because
# this 2-core machine's throughput moves by a third from one minute to the next: each step is
# compared with the limit measured next to it (before it in odd rounds, after it in even
# ones). Only 127.0.0.1 and the script's own links are used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MIB=${1:-1024}
TIMEOUT=${BERTH_BENCH_TIMEOUT:-1800}
PORT=${BERTH_BENCH_S3_PORT:-19901}
CARRIER=${BERTH_BENCH_CARRIER:-member}
ROUNDS=${BERTH_BENCH_ROUNDS:-3}
NS=bench-real-backup
IMAGE=berth.local/redis:deb12
WORK=$(mktemp -d /tmp/berth-real-backup.XXXXXX)
# shellcheck source=bench/lib.sh
source bench/lib.sh

eval "$(scripts/testenv env)"
real=$(kubectl get nodes -l berth.io/node-kind=real -o name | wc -l)
((real >= 2)) || { log "needs the test control plane with 2 real nodes (scripts/testenv up --real-nodes 2)"; exit 1; }
cargo build --release --quiet --bin berth -p berth
cargo build --release --quiet -p berth-backup --example s3copy
TARGET=${CARGO_TARGET_DIR:-$PWD/target}/release
BERTH=$TARGET/berth
S3COPY=$TARGET/examples/s3copy
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
case $CARRIER in
  member)
    [[ -n ${BERTH_TESTENV_NETNS:-} && -n ${BERTH_TESTENV_POD_NET_IP:-} ]] ||
      { log "no nodes' network namespace in scripts/testenv env"; exit 1; }
    HOST=$BERTH_TESTENV_POD_NET_IP
    IN_NETNS=(nsenter "--net=$BERTH_TESTENV_NETNS" --)
    AGENT_IMAGE=$(scripts/testenv operator-image "$BERTH")
    OPERATOR_ARGS=(--agent-image "$AGENT_IMAGE")
    INPUT=Stdin ;;
  operator) HOST=127.0.0.1 IN_NETNS=() OPERATOR_ARGS=() INPUT=File ;;
  *) log "BERTH_BENCH_CARRIER must be member or operator"; exit 1 ;;
esac
case ${BERTH_BENCH_RESTORE:-stream} in
  stream) ACTION='cat > /data/restored' ;;
  # shellcheck disable=SC2016 # expanded by the action's shell, in the pod
  link) ACTION='ln "$BERTH_RESTORE_FILE" /data/restored' INPUT=File ;;
  *) log "BERTH_BENCH_RESTORE must be stream or link"; exit 1 ;;
esac
CARRIER_FIELD=${CARRIER^}
ENDPOINT=http://$HOST:$PORT

mkdir -p "$WORK/s3/bench"
ROOT_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID ROOT_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
  "${IN_NETNS[@]}" "$BERTH_TESTENV_BIN/versitygw" --port "$HOST:$PORT" --region "$AWS_REGION" \
  --quiet posix "$WORK/s3" > "$WORK/gw.log" 2>&1 &
GW=$!
OPERATOR= SAMPLER=
teardown() {
  set +e   # a step that fails here must not skip the others (the operator would outlive the run)
  kubectl delete sapp --all -n "$NS" --timeout=120s >/dev/null 2>&1 || true
  [[ -z $SAMPLER ]] || kill "$SAMPLER" 2>/dev/null   # else it outlives a failed run, holding its output open
  [[ -n $OPERATOR ]] && { kill "$OPERATOR" 2>/dev/null; wait "$OPERATOR" 2>/dev/null || true; }
  kubectl delete namespace "$NS" --timeout=300s >/dev/null 2>&1 || true
  kill "$GW" 2>/dev/null || true
  rm -rf "$WORK"
}
trap teardown EXIT
until (exec 3<> "/dev/tcp/$HOST/$PORT") 2> /dev/null; do
  kill -0 "$GW" || { cat "$WORK/gw.log" >&2; exit 1; }
  sleep 0.1
done

kubectl apply --server-side --force-conflicts -f deploy/crd.yaml >/dev/null
kubectl delete namespace "$NS" --wait=true --ignore-not-found >/dev/null
kubectl create namespace "$NS" >/dev/null
kubectl create secret generic store -n "$NS" --from-literal=accessKeyId="$AWS_ACCESS_KEY_ID" \
  --from-literal=secretAccessKey="$AWS_SECRET_ACCESS_KEY" >/dev/null
"$BERTH" operator --namespace "$NS" --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 \
  "${OPERATOR_ARGS[@]}" 2> "$WORK/operator.log" > /dev/null &
OPERATOR=$!

# app NAME [RESTORE_URL]: a one-member app on a real node holding its volume, whose backup
# action is `cat /data/blob` and whose restore action puts the data at /data/restored ($ACTION).
app() {
  local restore=${2:+"restoreFrom: {url: \"$2\"}"}
  cat <<YAML
apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {name: $1, namespace: $NS}
spec:
  $restore
  parts:
  - name: $1
    replicas: 1
    template:
      spec:
        nodeSelector: {berth.io/node-kind: real}
        tolerations: [{key: berth.io/node-kind, value: real, effect: NoSchedule}]
        terminationGracePeriodSeconds: 1
        containers:
        - name: main
          image: $IMAGE
          command: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep infinity & wait"]
    state:
      persistent:
      - {name: data, size: $((MIB * 3))Mi, mountPath: /data}
      backup:
        action: {exec: ["cat", "/data/blob"], timeoutSeconds: $TIMEOUT}
        restore: {exec: ["/bin/sh", "-c", '$ACTION'], timeoutSeconds: $TIMEOUT}
        restoreInput: $INPUT
        repository:
          carrier: $CARRIER_FIELD
          endpoint: $ENDPOINT
          bucket: bench
          region: $AWS_REGION
          pathStyle: true
          credentials: {secretName: store}
YAML
}

hwm_mib() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$OPERATOR/status"; }
# sample_transfers FILE: until killed, the highest VmHWM (KiB) of any `berth agent transfer`.
sample_transfers() {
  local top=0 pid kib
  while true; do
    for pid in $(pgrep -f "berth agent transfer" || true); do
      kib=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
      ((${kib:-0} > top)) && { top=$kib; echo "$top" > "$1"; }
    done
    sleep 0.05
  done
}
# carried_rss: the peak RSS column.
carried_rss() {
  if [[ $CARRIER == member ]]; then
    awk '{ printf "%.1f (berth agent transfer)", $1 / 1024 }' "$WORK/hwm" 2>/dev/null || echo "not sampled"
  else
    echo "$(hwm_mib) (operator)"
  fi
}

log "source app, filling its volume with $MIB MiB"
app source | kubectl apply --server-side -f - >/dev/null
kubectl wait sapp/source -n "$NS" --for=jsonpath='{.status.phase}'=Ready --timeout="${TIMEOUT}s" >/dev/null
kubectl exec -n "$NS" source-0 -- sh -c "head -c $((MIB << 20)) /dev/urandom > /data/blob"

log "exec limit"
t0=$(now_ms)
kubectl exec -n "$NS" source-0 -- cat /data/blob > /dev/null
exec_ms=$(($(now_ms) - t0))

if [[ $CARRIER == member ]]; then
  kubectl exec -i -n "$NS" source-0 -c main -- sh -c 'cat > /data/s3copy && chmod +x /data/s3copy' < "$S3COPY"
else
  head -c "$((MIB << 20))" /dev/urandom > "$WORK/data"
fi
# s3copy ARGS...: the physical limit, s3copy's own milliseconds (it prints "... in X.XXs: ...").
# With the member carrier in the member's pod (its main container), between its volume and the
# bucket; else on this host, where the operator runs.
s3copy() {
  local out
  if [[ $CARRIER == member ]]; then
    out=$(kubectl exec -n "$NS" source-0 -c main -- env AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
      AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_REGION="$AWS_REGION" /data/s3copy "$@")
  else
    out=$("$S3COPY" "$@")
  fi
  sed -n 's/.* in \([0-9.]*\)s:.*/\1/p' <<<"$out" | awk '{ printf "%d", $1 * 1000 }'
}
# event_ms OBJECT REASON PATTERN: milliseconds from the newest REASON event of OBJECT, the
# number PATTERN's group catches ("in X.XXs", "X.XXs of it in the member's pod" ...); 0 if none.
event_ms() {
  kubectl get events -n "$NS" --field-selector "involvedObject.name=$1,reason=$2" \
    -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' | sed -n "s/$3/\1/p" | tail -1 |
    awk '{ s = $1 } END { printf "%d", s * 1000 }'
}
IN='.* in \([0-9.]*\)s.*'
SHARE=".*, \([0-9.]*\)s of it in the member's pod.*"
THERE='.*, \([0-9.]*\)s there.*'

# ended KIND NAME FIELD: waits until the object's FIELD says Succeeded or Failed (timed by the
# caller, so nothing else happens here); succeeded KIND NAME FIELD: ends the run, showing the
# object, unless it says Succeeded.
phase() { kubectl get "$1" "$2" -n "$NS" -o jsonpath="{$3}"; }
ended() { until [[ $(phase "$@") =~ ^(Succeeded|Failed)$ ]]; do sleep 0.1; done; }
succeeded() { [[ $(phase "$@") == Succeeded ]] || { kubectl get "$1" "$2" -n "$NS" -o yaml >&2; exit 1; }; }

# The steps of a round. Each starts with `sync`: the 1 GiB a step wrote would otherwise be
# written back (after 30 s, the kernel's dirty_expire) during whichever step came next, and
# which that is alternates. Each appends "STEP MS LIMIT_MS" lines to $WORK/times for berth's
# steps, once both its own time and the limit's are known: physical_up and physical_down set
# UP_MS and DOWN_MS, backup sets KEY, URL and SHA for the rest of the round.
physical_up() {
  sync
  log "round $1: physical upload"
  UP_MS=$(s3copy up "$ENDPOINT" bench "physical/$1" "$([[ $CARRIER == member ]] && echo /data/blob || echo "$WORK/data")")
  rm -rf "$WORK/s3/bench/physical"
}

physical_down() {
  sync
  log "round $1: physical download"
  if [[ $CARRIER == member ]]; then
    DOWN_MS=$(s3copy down "$ENDPOINT" bench "$KEY" /data/downloaded)
    kubectl exec -n "$NS" source-0 -c main -- rm -f /data/downloaded
  else
    DOWN_MS=$(s3copy down "$ENDPOINT" bench "$KEY" "$WORK/downloaded")
    rm -f "$WORK/downloaded"
  fi
}

# backup N: StatefulAppBackup bench-N; its times (BACKUP_TIMES) are written once UP_MS is known.
backup() {
  local n=$1 t0 ms
  sync
  log "round $n: backup ($CARRIER carries the bytes)"
  t0=$(now_ms)
  kubectl apply --server-side -f - >/dev/null <<YAML
apiVersion: berth.io/v1alpha1
kind: StatefulAppBackup
metadata: {name: bench-$n, namespace: $NS}
spec: {app: source}
YAML
  ended sabk "bench-$n" .status.phase
  ms=$(($(now_ms) - t0))
  succeeded sabk "bench-$n" .status.phase
  BACKUP_TIMES="backup-whole $ms
backup-transfer $(event_ms "bench-$n" BackupSucceeded "$IN")"
  [[ $CARRIER == operator ]] || BACKUP_TIMES+="
backup-pod $(event_ms "bench-$n" BackupSucceeded "$SHARE")"
  URL=$(kubectl get sabk "bench-$n" -n "$NS" -o jsonpath='{.status.url}')
  SHA=$(kubectl get sabk "bench-$n" -n "$NS" -o jsonpath='{.status.sha256}')
  KEY=$(kubectl get sabk "bench-$n" -n "$NS" -o jsonpath='{.status.key}')
}

# restore N: app copy-N restored from this round's backup, checked, then deleted with its claim
# (its volume's directory goes with it: scripts/testenv's volume-reaper); its times
# (RESTORE_TIMES) are written once DOWN_MS is known.
restore() {
  local n=$1 t0 ms restored
  sync
  log "round $n: restore from $URL ($CARRIER carries the bytes)"
  t0=$(now_ms)
  app "copy-$n" "$URL" | kubectl apply --server-side -f - >/dev/null
  ended sapp "copy-$n" .status.restore.phase
  ms=$(($(now_ms) - t0))
  succeeded sapp "copy-$n" .status.restore.phase
  RESTORE_TIMES="restore-whole $ms
restore-transfer $(event_ms "copy-$n" MemberRestored "$IN")"
  [[ $CARRIER == operator ]] || RESTORE_TIMES+="
restore-pod $(event_ms "copy-$n" MemberRestored "$THERE")"
  kubectl wait sapp/"copy-$n" -n "$NS" --for=jsonpath='{.status.phase}'=Ready --timeout="${TIMEOUT}s" >/dev/null
  restored=$(kubectl exec -n "$NS" "copy-$n-0" -- sha256sum /data/restored | cut -d' ' -f1)
  [[ $restored == "$SHA" ]] || { log "restored data differs: $restored, backup $SHA"; exit 1; }
  kubectl delete sapp "copy-$n" -n "$NS" --timeout=120s >/dev/null
  kubectl get pvc -n "$NS" -o name | grep -- "-copy-$n-" | xargs -r kubectl delete -n "$NS" --timeout=120s >/dev/null
}

# round N: the four steps; odd rounds measure each limit first, even rounds berth's step first,
# so that neither always runs on what the other left behind (dirty pages, the store's files).
round() {
  local n=$1
  if ((n % 2)); then
    physical_up "$n"; backup "$n"; physical_down "$n"; restore "$n"
  else
    backup "$n"; physical_up "$n"; restore "$n"; physical_down "$n"
  fi
  awk -v limit="$UP_MS" '{ print $0, limit }' <<<"$BACKUP_TIMES" >> "$WORK/times"
  awk -v limit="$DOWN_MS" '{ print $0, limit }' <<<"$RESTORE_TIMES" >> "$WORK/times"
}

sample_transfers "$WORK/hwm" & SAMPLER=$!
for ((n = 1; n <= ROUNDS; n++)); do round "$n"; done
kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true
rss=$(carried_rss)

# summary STEP TITLE: one table row: each round's ratio to its own physical limit, the median
# ratio and the median MiB/s.
summary() {
  awk -v step="$1" -v title="$2" -v mib="$MIB" -v rss="$rss" '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    $1 == step && $2 > 0 {
      n++; rate[n] = mib / ($2 / 1000); limit[n] = mib / ($3 / 1000); ratio[n] = rate[n] / limit[n]
      rounds = rounds sprintf("%s%.0f (%.0f) %.2f", n > 1 ? ", " : "", rate[n], limit[n], ratio[n])
    }
    END { if (n) printf "| %s | %s | %.0f | **%.2f** | %s |\n", title, rounds, median(rate, n), median(ratio, n), rss }
  ' "$WORK/times"
}
echo "| step ($CARRIER carries the bytes, $MIB MiB, $ROUNDS rounds) | each round: MiB/s (physical limit) ratio | median MiB/s | median ratio | peak RSS of the carrying process (MiB) |"
echo "|---|---|---|---|---|"
summary backup-whole "backup: StatefulAppBackup created -> Succeeded"
summary backup-transfer "backup: the transfer (BackupSucceeded event)"
summary backup-pod "backup: in the pod (berth agent transfer's own time)"
summary restore-whole "restore: app created -> restore Succeeded"
summary restore-transfer "restore: the member's transfer (MemberRestored event)"
summary restore-pod "restore: in the pod (berth agent transfer's own time)"
awk -v ms="$exec_ms" -v mib="$MIB" 'BEGIN { printf "\nThe exec stream alone (`kubectl exec cat FILE > /dev/null`): %.2f s, %.0f MiB/s.\n", ms / 1000, mib / (ms / 1000) }'
