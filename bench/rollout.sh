#!/usr/bin/env bash
# bench/rollout.sh [ROUNDS]: write availability during a rolling config change on the local
# engine (issue 6, first benchmark).
#
# For each update strategy (RoleAware with the example's switchover action, then Ordered: highest
# ordinal first, the master restarted in place), ROUNDS times (default 1), on a fresh
# examples/redis.yaml (3 members, own home and address slot):
#   a client writes key bench:N every 5 ms through the app's role-selecting `write` service
#   (127.<slot>.250.1:6379, forwarded by the supervisor to the member whose role probe says
#   master; with BERTH_BENCH_DIRECT=1 the client finds the master itself by asking the members
#   `ROLE` after an error), reconnecting after an error, recording each acknowledged write and
#   each error with its time;
#   `berth apply` of a config change (one redis.conf line) runs the full rollout;
#   afterwards every acknowledged key is read back from the master.
# Reports the longest gap between acknowledged writes, the total time writes failed (from the
# first error of a run of errors to the next acknowledged write), the rollout duration
# (`berth apply` wall time) and acknowledged writes lost, as a Markdown table; also the rollout as
# the supervisor timed it against the sum of its members' own restart-to-ready times (events.log),
# the roadmap's "a full rollout takes at most 1.2x" ratio.
# Needs: redis-server, redis-cli (Debian redis-server, redis-tools), python3, cargo.
# Only 127.0.0.0/8 is used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROUNDS=${1:-1}
SLOT=${BERTH_BENCH_SLOT:-190}
WORK=$(mktemp -d /tmp/berth-rollout-bench.XXXXXX)
# shellcheck source=bench/lib.sh
source bench/lib.sh

if [[ -z ${BERTH:-} ]]; then
  cargo build --quiet --bin berth
  BERTH=${CARGO_TARGET_DIR:-$PWD/target}/debug/berth
fi
HOME_DIR=$WORK/home
cleanup() {
  "$BERTH" down redis --purge --home "$HOME_DIR" >/dev/null 2>&1 || true
  [[ -n ${CLIENT_PID:-} ]] && kill "$CLIENT_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# manifest STRATEGY CONF_LINE: examples/redis.yaml with an update strategy and one more
# redis.conf line.
manifest() {
  python3 - "$1" "$2" <<'PY'
import sys
strategy, line = sys.argv[1], sys.argv[2]
text = open("examples/redis.yaml").read()
text = text.replace("      replicas: 3\n", f"      replicas: 3\n      update:\n        strategy: {strategy}\n", 1)
text = text.replace("repl-diskless-sync-delay 0\n", f"repl-diskless-sync-delay 0\n                {line}\n", 1)
print(text, end="")
PY
}

# The writer: SET bench:N every 5 ms until SIGTERM; one line per attempt: "<t> ok N" or
# "<t> err N <why>" (t: seconds, monotonic clock shared with the driver via time.time()).
cat >"$WORK/client.py" <<'PY'
import signal, socket, sys, time
slot, out = sys.argv[1], open(sys.argv[2], "w", buffering=1)
members = [f"127.{slot}.1.{i}" for i in (1, 2, 3)]
# With a write address (the role-selecting service), always connect there.
write_address = sys.argv[3] if len(sys.argv) > 3 else None
running = True
def stop(*_):
    global running
    running = False
signal.signal(signal.SIGTERM, stop)

def command(sock, *args):
    data = f"*{len(args)}\r\n" + "".join(f"${len(str(a))}\r\n{a}\r\n" for a in args)
    sock.sendall(data.encode())
    f = sock.makefile("rb")
    line = f.readline().decode().rstrip("\r\n")
    if not line:
        raise ConnectionError("connection closed")
    if line.startswith("*"):
        first = None
        head = f.readline().decode()
        if head.startswith("$"):
            first = f.readline().decode().rstrip("\r\n")
        return first
    if line.startswith("-"):
        raise RuntimeError(line[1:].split(" ")[0])
    return line

def connect(addr):
    s = socket.create_connection((addr, 6379), timeout=1.0)
    s.settimeout(2.0)
    return s

def master():
    for m in members:
        try:
            s = connect(m)
            role = command(s, "ROLE")
            s.close()
            if role == "master":
                return m
        except Exception:
            pass
    return None

sock, n, period = None, 0, 0.005
next_at = time.time()
while running:
    now = time.time()
    if now < next_at:
        time.sleep(next_at - now)
    next_at += period
    t = time.time()
    try:
        if sock is None:
            m = write_address or master()
            if m is None:
                raise ConnectionError("no master")
            sock = connect(m)
        reply = command(sock, "SET", f"bench:{n}", n)
        if reply != "+OK":
            raise RuntimeError(reply)
        out.write(f"{t:.6f} ok {n}\n")
    except Exception as e:
        out.write(f"{t:.6f} err {n} {type(e).__name__}:{e}\n".replace("\n", " ").rstrip() + "\n")
        if sock is not None:
            try:
                sock.close()
            except Exception:
                pass
        sock = None
        next_at = time.time() + period
    n += 1
PY

# Reads back every acknowledged key from the master and prints the metrics row.
cat >"$WORK/report.py" <<'PY'
import socket, sys
log, slot, strategy, t0, t1 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
# The rollout as the supervisor timed it, and its members' own restart-to-ready times.
rollout_s, ready_sum_s = float(sys.argv[6]), float(sys.argv[7])
rows = [l.split(" ", 3) for l in open(log) if l.strip()]
acked = [(float(r[0]), int(r[2])) for r in rows if r[1] == "ok"]
events = [(float(r[0]), r[1]) for r in rows]
# Longest gap between consecutive acknowledged writes that overlaps the rollout.
gap, gap_at = 0.0, 0.0
for (a, _), (b, _) in zip(acked, acked[1:]):
    if b >= t0 and a <= t1 and b - a > gap:
        gap, gap_at = b - a, a
import datetime
at = datetime.datetime.fromtimestamp(gap_at, datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3]
print(f"    longest gap starts at {at} UTC", file=sys.stderr)
errs = [l.strip() for l in open(log) if " err " in l]
for e in errs[:3]:
    print(f"    first errors: {e}", file=sys.stderr)
# Error time: from the first error of a run to the next acknowledged write.
err_time, start, errors = 0.0, None, 0
for t, kind in events:
    if kind == "err":
        errors += 1
        if start is None:
            start = t
    elif start is not None:
        err_time += t - start
        start = None
def connect(addr):
    s = socket.create_connection((addr, 6379), timeout=2)
    return s, s.makefile("rb")
def call(s, f, *args):
    s.sendall((f"*{len(args)}\r\n" + "".join(f"${len(str(a))}\r\n{a}\r\n" for a in args)).encode())
    return f
master = None
for i in (1, 2, 3):
    s, f = connect(f"127.{slot}.1.{i}")
    call(s, f, "ROLE")
    f.readline()
    f.readline()
    if f.readline().decode().strip() == "master":
        master = f"127.{slot}.1.{i}"
    s.close()
s, f = connect(master)
lost = 0
for _, n in acked:
    call(s, f, "GET", f"bench:{n}")
    head = f.readline().decode().strip()
    if head == "$-1":
        lost += 1
        continue
    value = f.readline().decode().strip()
    if value != str(n):
        lost += 1
ratio = rollout_s / ready_sum_s if ready_sum_s else float("nan")
print(f"| {strategy} | {len(acked)} | {errors} | {gap * 1000:.0f} | {err_time * 1000:.0f} | {t1 - t0:.1f} | {lost} | {master} "
      f"| {rollout_s:.2f} | {ready_sum_s:.2f} | {ratio:.2f} |")
PY

echo "| strategy | acked writes | errors | longest write gap (ms) | error time (ms) | rollout (s) | acked writes lost | master after | supervisor's rollout (s) | Σ members' restart-to-ready (s) | ratio |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
for round in $(seq "$ROUNDS"); do
  for strategy in RoleAware Ordered; do
    log "round $round: $strategy"
    rm -f "$WORK/writes.log"
    manifest "$strategy" "hz 10" >"$WORK/before.yaml"
    manifest "$strategy" "hz 11" >"$WORK/after.yaml"
    "$BERTH" down redis --purge --home "$HOME_DIR" >/dev/null 2>&1 || true
    "$BERTH" up "$WORK/before.yaml" --home "$HOME_DIR" --slot "$SLOT" >/dev/null
    # Wait until the role probe has seen every member (a switchover needs the leader known).
    for _ in $(seq 100); do
      roles=$("$BERTH" status redis --home "$HOME_DIR" -o json | grep -c '"role": "\(master\|slave\)"' || true)
      [[ $roles == 3 ]] && break
      sleep 0.1
    done
    if [[ ${BERTH_BENCH_DIRECT:-0} == 1 ]]; then
      python3 "$WORK/client.py" "$SLOT" "$WORK/writes.log" &
    else
      python3 "$WORK/client.py" "$SLOT" "$WORK/writes.log" "127.$SLOT.250.1" &
    fi
    CLIENT_PID=$!
    sleep 2
    t0=$(python3 -c 'import time; print(time.time())')
    "$BERTH" apply "$WORK/after.yaml" --home "$HOME_DIR" >/dev/null
    t1=$(python3 -c 'import time; print(time.time())')
    sleep 2
    kill "$CLIENT_PID"
    wait "$CLIENT_PID" || true
    CLIENT_PID=
    events=$HOME_DIR/redis/events.log
    rollout_s=$(grep -o 'complete in [0-9.]*s' "$events" | tail -n1 | tr -dc '0-9.')
    ready_sum_s=$(grep -o 'ready after [0-9]*ms' "$events" | awk '{ s += $3 + 0 } END { printf "%.3f", s / 1000 }')
    python3 "$WORK/report.py" "$WORK/writes.log" "$SLOT" "$strategy" "$t0" "$t1" "${rollout_s:-0}" "${ready_sum_s:-0}"
    grep -E 'update|switchover' "$HOME_DIR/redis/events.log" | sed 's/^/    /' >&2
  done
done
