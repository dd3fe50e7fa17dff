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
#
# Needs the shared test control plane with real nodes running (`scripts/testenv up
# --real-nodes 2`; used, never started or stopped here), scripts/testenv build (versitygw) and
# cargo. In a fresh namespace, a release `berth operator` watching only it. Then:
#   fill:               a one-member app on a real node gets MIB (default 1024) MiB of random
#                       data in its volume (written inside the pod)
#   exec limit:         `kubectl exec cat` of that file to /dev/null on this host: the exec
#                       stream alone (kubelet -> API server -> client)
#   physical upload:    s3copy up (berth-backup's own client) of the same number of bytes
#                       straight to the bucket: with the member carrier from the member's pod
#                       (the binary copied into it, reading its volume), else from a local file
#                       on this host (where the operator runs); the time includes the exec
#   backup:             a StatefulAppBackup whose action is `cat FILE`, from creation to
#                       Succeeded; and the transfer alone, as its BackupSucceeded event says
#   physical download:  s3copy down of that backup's data, in the pod to its volume (member) or
#                       on this host to a local file (operator)
#   restore:            a new app with `restoreFrom` that backup, from creation to
#                       status.restore Succeeded (pod start, init containers, the transfer, the
#                       restore action `cat > volume`), its sha256 checked; and the member's
#                       transfer alone, as its MemberRestored event says (from the operator's
#                       exec to the answer, and, with the member carrier, the pod's own time)
# and prints seconds, MiB/s, the ratio to the physical limit and the peak RSS of the process
# carrying the bytes (the operator's VmHWM so far; with the member carrier, the highest VmHWM
# of `berth agent transfer` sampled every 50 ms from /proc on this host, where the nodes'
# containers run) as a Markdown table. Only 127.0.0.1 and the script's own links are used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MIB=${1:-1024}
TIMEOUT=${BERTH_BENCH_TIMEOUT:-1800}
PORT=${BERTH_BENCH_S3_PORT:-19901}
CARRIER=${BERTH_BENCH_CARRIER:-member}
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
CARRIER_FIELD=${CARRIER^}
ENDPOINT=http://$HOST:$PORT

mkdir -p "$WORK/s3/bench"
ROOT_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID ROOT_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
  "${IN_NETNS[@]}" "$BERTH_TESTENV_BIN/versitygw" --port "$HOST:$PORT" --region "$AWS_REGION" \
  --quiet posix "$WORK/s3" > "$WORK/gw.log" 2>&1 &
GW=$!
OPERATOR=
# The hostPath directories of the bench's volumes (kwok's provisioner never removes them, so
# each run would leave 3x MIB behind until `scripts/testenv down`).
VOLUMES=${BERTH_TESTENV_DIR:-${BERTH_TESTENV_CACHE:-$HOME/.cache/berth-testenv}/run}/volumes
teardown() {
  local pvs
  pvs=$(kubectl get pvc -n "$NS" -o jsonpath='{.items[*].spec.volumeName}' 2>/dev/null || true)
  kubectl delete sapp --all -n "$NS" --timeout=120s >/dev/null 2>&1 || true
  [[ -n $OPERATOR ]] && { kill "$OPERATOR" 2>/dev/null; wait "$OPERATOR" 2>/dev/null || true; }
  kubectl delete namespace "$NS" --timeout=300s >/dev/null 2>&1 || true
  kill "$GW" 2>/dev/null || true
  for pv in $pvs; do [[ $pv == pvc-* ]] && rm -rf "${VOLUMES:?}/$pv"; done
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
# action is `cat /data/blob` and whose restore action writes stdin to /data/restored.
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
        restore: {exec: ["/bin/sh", "-c", "cat > /data/restored"], timeoutSeconds: $TIMEOUT}
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
# carried_rss STEP: the peak RSS column for a step.
carried_rss() {
  if [[ $CARRIER == member ]]; then
    awk '{ printf "%.1f (berth agent transfer)", $1 / 1024 }' "$WORK/$1.hwm" 2>/dev/null || echo "not sampled"
  else
    echo "$(hwm_mib) (operator)"
  fi
}
# event_seconds REASON: the seconds the newest REASON event of the namespace names ("in X.XXs").
event_seconds() {
  kubectl get events -n "$NS" --field-selector "reason=$1" -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' |
    sed -n 's/.* in \([0-9.]*\)s.*/\1/p' | tail -1
}
# seconds MIB_S LIMIT_MIB_S RATIO for a step of MS against a limit of LIMIT_MS
row() {
  awk -v what="$1" -v ms="$2" -v limit="$3" -v rss="$4" -v mib="$MIB" 'BEGIN {
    rate = mib / (ms / 1000); lim = mib / (limit / 1000)
    printf "| %s | %d | %.2f | %.0f | %.0f | %.2f | %s |\n", what, mib, ms / 1000, rate, lim, rate / lim, rss }'
}

log "source app, filling its volume with $MIB MiB"
app source | kubectl apply --server-side -f - >/dev/null
kubectl wait sapp/source -n "$NS" --for=jsonpath='{.status.phase}'=Ready --timeout="${TIMEOUT}s" >/dev/null
kubectl exec -n "$NS" source-0 -- sh -c "head -c $((MIB << 20)) /dev/urandom > /data/blob"

log "exec limit"
t0=$(now_ms)
kubectl exec -n "$NS" source-0 -- cat /data/blob > /dev/null
exec_ms=$(($(now_ms) - t0))

# in_pod POD ARGS...: s3copy ARGS in POD's main container (copied there first): the physical
# limit where a member carries the bytes, from the pod's network to its volume.
in_pod() {
  local pod=$1
  shift
  kubectl exec -i -n "$NS" "$pod" -c main -- sh -c 'cat > /data/s3copy && chmod +x /data/s3copy' < "$S3COPY"
  kubectl exec -n "$NS" "$pod" -c main -- env AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" \
    AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" AWS_REGION="$AWS_REGION" /data/s3copy "$@" > /dev/null
}

log "physical upload"
if [[ $CARRIER == member ]]; then
  t0=$(now_ms)
  in_pod source-0 up "$ENDPOINT" bench physical/data /data/blob
  up_ms=$(($(now_ms) - t0))
else
  head -c "$((MIB << 20))" /dev/urandom > "$WORK/data"
  t0=$(now_ms)
  "$S3COPY" up "$ENDPOINT" bench physical/data "$WORK/data" > /dev/null
  up_ms=$(($(now_ms) - t0))
  rm -f "$WORK/data"
fi

log "backup ($CARRIER carries the bytes)"
sample_transfers "$WORK/backup.hwm" & SAMPLER=$!
t0=$(now_ms)
kubectl apply --server-side -f - >/dev/null <<YAML
apiVersion: berth.io/v1alpha1
kind: StatefulAppBackup
metadata: {name: bench, namespace: $NS}
spec: {app: source}
YAML
until [[ $(kubectl get sabk bench -n "$NS" -o jsonpath='{.status.phase}') =~ ^(Succeeded|Failed)$ ]]; do sleep 0.1; done
backup_ms=$(($(now_ms) - t0))
kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true
backup_rss=$(carried_rss backup)
backup_transfer_ms=$(awk -v s="$(event_seconds BackupSucceeded)" 'BEGIN { printf "%d", s * 1000 }')
[[ $(kubectl get sabk bench -n "$NS" -o jsonpath='{.status.phase}') == Succeeded ]] || {
  kubectl get sabk bench -n "$NS" -o yaml >&2; exit 1; }
url=$(kubectl get sabk bench -n "$NS" -o jsonpath='{.status.url}')
sha=$(kubectl get sabk bench -n "$NS" -o jsonpath='{.status.sha256}')
key=$(kubectl get sabk bench -n "$NS" -o jsonpath='{.status.key}')

log "physical download"
if [[ $CARRIER == member ]]; then
  t0=$(now_ms)
  in_pod source-0 down "$ENDPOINT" bench "$key" /data/downloaded
  down_ms=$(($(now_ms) - t0))
  kubectl exec -n "$NS" source-0 -c main -- rm -f /data/downloaded
else
  t0=$(now_ms)
  "$S3COPY" down "$ENDPOINT" bench "$key" "$WORK/downloaded" > /dev/null
  down_ms=$(($(now_ms) - t0))
  rm -f "$WORK/downloaded"
fi

log "restore from $url ($CARRIER carries the bytes)"
sample_transfers "$WORK/restore.hwm" & SAMPLER=$!
t0=$(now_ms)
app copy "$url" | kubectl apply --server-side -f - >/dev/null
until [[ $(kubectl get sapp copy -n "$NS" -o jsonpath='{.status.restore.phase}') =~ ^(Succeeded|Failed)$ ]]; do sleep 0.1; done
restore_ms=$(($(now_ms) - t0))
kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true
restore_rss=$(carried_rss restore)
restore_transfer_ms=$(awk -v s="$(event_seconds MemberRestored)" 'BEGIN { printf "%d", s * 1000 }')
# the member's own time, as the same event says ("..., N.NNs there"; member carrier only)
pod_s=$(kubectl get events -n "$NS" --field-selector reason=MemberRestored \
  -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' | sed -n 's/.*, \([0-9.]*\)s there.*/\1/p' | tail -1)
restore_pod_ms=$(awk -v s="${pod_s:-0}" 'BEGIN { printf "%d", s * 1000 }')
[[ $(kubectl get sapp copy -n "$NS" -o jsonpath='{.status.restore.phase}') == Succeeded ]] || {
  kubectl get sapp copy -n "$NS" -o yaml >&2; exit 1; }
kubectl wait sapp/copy -n "$NS" --for=jsonpath='{.status.phase}'=Ready --timeout="${TIMEOUT}s" >/dev/null
restored=$(kubectl exec -n "$NS" copy-0 -- sha256sum /data/restored | cut -d' ' -f1)
[[ $restored == "$sha" ]] || { log "restored data differs: $restored, backup $sha"; exit 1; }

echo "| step ($CARRIER carries the bytes) | MiB | seconds | MiB/s | physical limit (MiB/s) | ratio | peak RSS of the carrying process (MiB) |"
echo "|---|---|---|---|---|---|---|"
row "backup: StatefulAppBackup created -> Succeeded" "$backup_ms" "$up_ms" "$backup_rss"
row "backup: the transfer (BackupSucceeded event)" "$backup_transfer_ms" "$up_ms" "$backup_rss"
row "restore: app created -> restore Succeeded" "$restore_ms" "$down_ms" "$restore_rss"
row "restore: the member's transfer (MemberRestored event)" "$restore_transfer_ms" "$down_ms" "$restore_rss"
((restore_pod_ms > 0)) && row "restore: in the pod (berth agent transfer's own time)" "$restore_pod_ms" "$down_ms" "$restore_rss"
awk -v ms="$exec_ms" -v mib="$MIB" 'BEGIN { printf "\nThe exec stream alone (`kubectl exec cat FILE > /dev/null`): %.2f s, %.0f MiB/s.\n", ms / 1000, mib / (ms / 1000) }'
