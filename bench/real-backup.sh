#!/usr/bin/env bash
# bench/real-backup.sh [MIB]: backup and restore throughput under `berth operator` on the test
# control plane's real nodes, where the operator carries the bytes through the `pods/exec`
# stream (issue 12; the Kubernetes twin of bench/backup.sh).
#
# Needs the shared test control plane with real nodes running (`scripts/testenv up
# --real-nodes 2`; used, never started or stopped here), scripts/testenv build (versitygw) and
# cargo. Starts versitygw on 127.0.0.1 (the operator runs on this host; pods never talk to S3)
# and, in a fresh namespace, a release `berth operator` watching only it. Then:
#   fill:               a one-member app on a real node gets MIB (default 1024) MiB of random
#                       data in its volume (written inside the pod)
#   exec limit:         `kubectl exec cat` of that file to /dev/null on this host: the exec
#                       stream alone (kubelet -> API server -> client)
#   physical upload:    s3copy up (berth-backup's own client) of the same number of bytes from a
#                       local file straight to the bucket
#   operator backup:    a StatefulAppBackup whose action is `cat FILE`, from creation to
#                       Succeeded (the exec stream into the multipart upload)
#   physical download:  s3copy down of that backup's data to a local file
#   operator restore:   a new app with `restoreFrom` that backup, from creation to
#                       status.restore Succeeded (download -> exec stdin -> the member's scratch
#                       dir -> checksum -> restore action `cat > volume`), its sha256 checked
# and prints seconds, MiB/s, the ratio to the physical limit and the operator's peak RSS
# (VmHWM) as a Markdown table. Only 127.0.0.1 and the script's own links are used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MIB=${1:-1024}
TIMEOUT=${BERTH_BENCH_TIMEOUT:-1800}
PORT=${BERTH_BENCH_S3_PORT:-19901}
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
ENDPOINT=http://127.0.0.1:$PORT

mkdir -p "$WORK/s3/bench"
ROOT_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID ROOT_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
  "$BERTH_TESTENV_BIN/versitygw" --port "127.0.0.1:$PORT" --region "$AWS_REGION" --quiet \
  posix "$WORK/s3" > "$WORK/gw.log" 2>&1 &
GW=$!
OPERATOR=
teardown() {
  kubectl delete sapp --all -n "$NS" --timeout=120s >/dev/null 2>&1 || true
  [[ -n $OPERATOR ]] && { kill "$OPERATOR" 2>/dev/null; wait "$OPERATOR" 2>/dev/null || true; }
  kubectl delete namespace "$NS" --timeout=300s >/dev/null 2>&1 || true
  kill "$GW" 2>/dev/null || true
  rm -rf "$WORK"
}
trap teardown EXIT
until (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null; do
  kill -0 "$GW" || { cat "$WORK/gw.log" >&2; exit 1; }
  sleep 0.1
done

kubectl apply --server-side --force-conflicts -f deploy/crd.yaml >/dev/null
kubectl delete namespace "$NS" --wait=true --ignore-not-found >/dev/null
kubectl create namespace "$NS" >/dev/null
kubectl create secret generic store -n "$NS" --from-literal=accessKeyId="$AWS_ACCESS_KEY_ID" \
  --from-literal=secretAccessKey="$AWS_SECRET_ACCESS_KEY" >/dev/null
"$BERTH" operator --namespace "$NS" --metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 \
  2> "$WORK/operator.log" > /dev/null &
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
        repository:
          endpoint: $ENDPOINT
          bucket: bench
          region: $AWS_REGION
          pathStyle: true
          credentials: {secretName: store}
YAML
}

hwm_mib() { awk '/VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$OPERATOR/status"; }
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

log "physical upload"
head -c "$((MIB << 20))" /dev/urandom > "$WORK/data"
t0=$(now_ms)
"$S3COPY" up "$ENDPOINT" bench physical/data "$WORK/data" > /dev/null
up_ms=$(($(now_ms) - t0))
rm -f "$WORK/data"

log "operator backup"
t0=$(now_ms)
kubectl apply --server-side -f - >/dev/null <<YAML
apiVersion: berth.io/v1alpha1
kind: StatefulAppBackup
metadata: {name: bench, namespace: $NS}
spec: {app: source}
YAML
until [[ $(kubectl get sabk bench -n "$NS" -o jsonpath='{.status.phase}') =~ ^(Succeeded|Failed)$ ]]; do sleep 0.1; done
backup_ms=$(($(now_ms) - t0))
backup_rss=$(hwm_mib)
[[ $(kubectl get sabk bench -n "$NS" -o jsonpath='{.status.phase}') == Succeeded ]] || {
  kubectl get sabk bench -n "$NS" -o yaml >&2; exit 1; }
url=$(kubectl get sabk bench -n "$NS" -o jsonpath='{.status.url}')
sha=$(kubectl get sabk bench -n "$NS" -o jsonpath='{.status.sha256}')
key=$(kubectl get sabk bench -n "$NS" -o jsonpath='{.status.key}')

log "physical download"
t0=$(now_ms)
"$S3COPY" down "$ENDPOINT" bench "$key" "$WORK/downloaded" > /dev/null
down_ms=$(($(now_ms) - t0))
rm -f "$WORK/downloaded"

log "operator restore from $url"
t0=$(now_ms)
app copy "$url" | kubectl apply --server-side -f - >/dev/null
until [[ $(kubectl get sapp copy -n "$NS" -o jsonpath='{.status.restore.phase}') =~ ^(Succeeded|Failed)$ ]]; do sleep 0.1; done
restore_ms=$(($(now_ms) - t0))
restore_rss=$(hwm_mib)
[[ $(kubectl get sapp copy -n "$NS" -o jsonpath='{.status.restore.phase}') == Succeeded ]] || {
  kubectl get sapp copy -n "$NS" -o yaml >&2; exit 1; }
kubectl wait sapp/copy -n "$NS" --for=jsonpath='{.status.phase}'=Ready --timeout="${TIMEOUT}s" >/dev/null
restored=$(kubectl exec -n "$NS" copy-0 -- sha256sum /data/restored | cut -d' ' -f1)
[[ $restored == "$sha" ]] || { log "restored data differs: $restored, backup $sha"; exit 1; }

echo "| step | MiB | seconds | MiB/s | physical limit (MiB/s) | ratio | operator peak RSS so far (MiB) |"
echo "|---|---|---|---|---|---|---|"
row "operator backup (exec stdout -> S3)" "$backup_ms" "$up_ms" "$backup_rss"
row "operator restore (S3 -> exec stdin -> restore action)" "$restore_ms" "$down_ms" "$restore_rss"
awk -v ms="$exec_ms" -v mib="$MIB" 'BEGIN { printf "\nThe exec stream alone (`kubectl exec cat FILE > /dev/null`): %.2f s, %.0f MiB/s.\n", ms / 1000, mib / (ms / 1000) }'
