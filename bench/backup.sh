#!/usr/bin/env bash
# bench/backup.sh [MIB]: backup and restore throughput on the local engine against the physical
# limit measured in the same run (issue 12).
#
# Starts versitygw (built by scripts/testenv build) on 127.0.0.1 with a bucket in a temp dir and
# writes MIB (default 1024) MiB of random data to a file. Then, with release builds:
#   physical upload:   s3copy up   (berth-backup's own client, the file straight to the bucket)
#   berth backup:      a one-member app whose backup action is `cat FILE`, streamed by berth
#   physical download: s3copy down (the bucket straight to a file)
#   berth restore:     `berth up --restore-from` of a new app whose restore action writes the data
#                      into its volume: streamed into the action as it downloads and checked at
#                      its end (`restoreInput: Stdin`; BERTH_BENCH_RESTORE_INPUT=File measures the
#                      download, checksum, then the action reading the scratch file;
#                      BERTH_BENCH_RESTORE=link: `File` and an action that hard-links the scratch
#                      file into the volume, so the bytes cross the disk once, as in the physical
#                      download)
# and reports seconds, MiB/s, the ratio to the physical limit and the peak RSS of the process
# carrying the bytes (`/usr/bin/time`), as a Markdown table. Only 127.0.0.1 is used.
# Needs: scripts/testenv build, cargo, /usr/bin/time. Disk: about 4x MIB free in /tmp.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MIB=${1:-1024}
WORK=$(mktemp -d /tmp/berth-backup-bench.XXXXXX)
PORT=${BERTH_BENCH_S3_PORT:-19900}
# shellcheck source=bench/lib.sh
source bench/lib.sh

INPUT=${BERTH_BENCH_RESTORE_INPUT:-Stdin}
case ${BERTH_BENCH_RESTORE:-stream} in
  stream) ACTION='cat > {{ volumes.data }}/restored' ;;
  # shellcheck disable=SC2016 # expanded by the action's shell
  link) ACTION='ln "$BERTH_RESTORE_FILE" {{ volumes.data }}/restored' INPUT=File ;;
  *) log "BERTH_BENCH_RESTORE must be stream or link"; exit 1 ;;
esac

cargo build --release --quiet --bin berth -p berth
cargo build --release --quiet -p berth-backup --example s3copy
TARGET=${CARGO_TARGET_DIR:-$PWD/target}/release
BERTH=$TARGET/berth
S3COPY=$TARGET/examples/s3copy
GW=$(scripts/testenv env | sed -n 's/^export BERTH_TESTENV_BIN=//p' | tr -d "'\"")/versitygw

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key AWS_REGION=us-east-1
mkdir -p "$WORK/s3/bench"
ROOT_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID ROOT_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
  "$GW" --port "127.0.0.1:$PORT" --region "$AWS_REGION" --quiet posix "$WORK/s3" > "$WORK/gw.log" 2>&1 &
GW_PID=$!
cleanup() {
  "$BERTH" down bench --home "$WORK/home-a" > /dev/null 2>&1 || true
  "$BERTH" down bench --home "$WORK/home-b" > /dev/null 2>&1 || true
  kill "$GW_PID" 2> /dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
until (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null; do
  kill -0 "$GW_PID" || { cat "$WORK/gw.log" >&2; exit 1; }
done
ENDPOINT=http://127.0.0.1:$PORT

log "writing $MIB MiB of random data"
head -c "$((MIB << 20))" /dev/urandom > "$WORK/data"
printf 'accessKeyId=%s\nsecretAccessKey=%s\n' "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > "$WORK/creds"
cat > "$WORK/app.yaml" <<YAML
apiVersion: berth.io/v1alpha1
kind: StatefulApp
metadata: {name: bench}
spec:
  parts:
    - name: bench
      replicas: 1
      template:
        spec:
          terminationGracePeriodSeconds: 1
          containers:
            - {name: main, image: none, command: ["/bin/sh", "-c", "exec sleep 100000"]}
      state:
        persistent:
          - {name: data, size: 2Gi, mountPath: /data}
        backup:
          action: {exec: ["cat", "$WORK/data"], timeoutSeconds: 3600}
          restore: {exec: ["/bin/sh", "-c", '$ACTION'], timeoutSeconds: 3600}
          restoreInput: $INPUT
          repository:
            endpoint: $ENDPOINT
            bucket: bench
            region: $AWS_REGION
            pathStyle: true
            credentials: {secretName: store}
YAML

# timed LABEL CMD...: runs CMD under /usr/bin/time; prints "seconds peak-KiB".
timed() {
  local label=$1 began ended
  shift
  began=$(now_ms)
  /usr/bin/time -f '%M' -o "$WORK/rss" "$@" > "$WORK/$label.out"
  ended=$(now_ms)
  echo "$(( ended - began )) $(tail -n 1 "$WORK/rss")"
}

row() { # row WHAT MS KIB LIMIT_MS
  awk -v what="$1" -v ms="$2" -v kib="$3" -v limit="$4" -v mib="$MIB" 'BEGIN {
    rate = mib / (ms / 1000); lim = mib / (limit / 1000)
    printf "| %s | %d | %.2f | %.0f | %.0f | %.2f | %.1f |\n", what, mib, ms / 1000, rate, lim, rate / lim, kib / 1024 }'
}

log "physical upload"
read -r up_ms _ < <(timed up "$S3COPY" up "$ENDPOINT" bench physical/data "$WORK/data")
log "berth backup"
"$BERTH" up "$WORK/app.yaml" --home "$WORK/home-a" --secret "store=$WORK/creds" > /dev/null
read -r backup_ms backup_kib < <(timed backup "$BERTH" backup bench --home "$WORK/home-a")
url=$(tail -n 1 "$WORK/backup.out")
"$BERTH" down bench --home "$WORK/home-a" > /dev/null
rm -rf "$WORK/home-a"
log "physical download"
read -r down_ms _ < <(timed down "$S3COPY" down "$ENDPOINT" bench physical/data "$WORK/downloaded")
rm -f "$WORK/downloaded"
log "berth restore from $url"
read -r restore_ms restore_kib < <(timed restore "$BERTH" up "$WORK/app.yaml" --home "$WORK/home-b" \
  --secret "store=$WORK/creds" --restore-from "$url")
cmp -s "$WORK/data" "$WORK/home-b/bench/bench-0/volumes/data/restored" || { echo "restored data differs" >&2; exit 1; }

# the restore alone, as the app's events log says ("restored from URL: ... in X.XXs")
restored_ms=$(sed -n 's/.*restored from .* in \([0-9.]*\)s$/\1/p' "$WORK/home-b/bench/events.log" |
  awk '{ printf "%d", $1 * 1000 }')

echo "| step | MiB | seconds | MiB/s | physical limit (MiB/s) | ratio | peak RSS of the process carrying the bytes (MiB) |"
echo "|---|---|---|---|---|---|---|"
row "berth backup (action stdout -> S3)" "$backup_ms" "$backup_kib" "$up_ms"
row "berth up --restore-from (S3 -> restore action), the whole command" "$restore_ms" "$restore_kib" "$down_ms"
row "the restore itself (its events.log line)" "$restored_ms" "$restore_kib" "$down_ms"
