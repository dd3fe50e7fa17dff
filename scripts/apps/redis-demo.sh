#!/usr/bin/env bash
# Redis 3-member (1 master + 2 replicas) demo, one loopback address per member,
# all on port 6379, each with its own data dir. The way berth's local engine runs it.
#
#   m1 127.0.10.1:6379  master
#   m2 127.0.10.2:6379  replicaof 127.0.10.1 6379
#   m3 127.0.10.3:6379  replicaof 127.0.10.1 6379
#
# Needs: apt-get install redis-server redis-tools   (Debian 12: Redis 7.0.15)
# Checks: replication of 10,000 keys, roles, SIGKILL+restart of a replica,
# FAILOVER switchover and manual REPLICAOF switchover, SIGTERM stop + restart
# keeps data, coexistence with an instance on 127.0.0.1:6379.
# Exits non-zero on the first failed check. Set KEEP=1 to keep the temp dir.
set -euo pipefail

REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
REDIS_CLI=${REDIS_CLI:-/usr/bin/redis-cli}
NET=${NET:-127.0.10}
PORT=6379
TIMEOUT=${TIMEOUT:-30}

command -v "$REDIS_SERVER" >/dev/null || { echo "redis-server missing: apt-get install redis-server redis-tools" >&2; exit 2; }
command -v "$REDIS_CLI" >/dev/null || { echo "redis-cli missing: apt-get install redis-tools" >&2; exit 2; }

WORK=$(mktemp -d /tmp/berth-redis-demo.XXXXXX)
declare -A PID=()

log()  { printf '[redis-demo %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { log "FAIL: $*"; exit 1; }
now_ms() { date +%s%3N; }
ip_of() { echo "$NET.$1"; }
cli()  { local i=$1; shift; "$REDIS_CLI" -h "$(ip_of "$i")" -p "$PORT" "$@"; }

cleanup() {
  local rc=$?
  for i in "${!PID[@]}"; do kill -TERM "${PID[$i]}" 2>/dev/null || true; done
  for i in "${!PID[@]}"; do
    for _ in $(seq 1 100); do kill -0 "${PID[$i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PID[$i]}" 2>/dev/null || true
    wait "${PID[$i]}" 2>/dev/null || true
  done
  if [[ "${KEEP:-0}" == 1 || $rc -ne 0 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT INT TERM

# poll CMD... until it succeeds or TIMEOUT seconds pass
wait_for() {
  local what=$1; shift
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || fail "timeout waiting for: $what"
    sleep 0.1
  done
}

write_conf() {   # write_conf I ROLE(master|replica)
  local i=$1 role=$2 d="$WORK/m$1"
  mkdir -p "$d"
  cat > "$d/redis.conf" <<EOF
# berth local member m$i
bind $(ip_of "$i")
port $PORT
# outgoing (replica->master) connections from our own address, and the
# address the master shows/uses for us (INFO replication, FAILOVER TO)
bind-source-addr $(ip_of "$i")
replica-announce-ip $(ip_of "$i")
replica-announce-port $PORT
# only loopback-bound, but clients come from 127.0.x.y != 127.0.0.1, which
# protected mode (no password) would reject with -DENIED
protected-mode no
dir $d
daemonize no
supervised no
pidfile ""
logfile ""
appendonly yes
appendfsync everysec
save ""
# start a full sync at once instead of waiting 5 s for more replicas
repl-diskless-sync-delay 0
EOF
  if [[ $role == replica ]]; then echo "replicaof $(ip_of 1) $PORT" >> "$d/redis.conf"; fi
}

start() {   # start I
  local i=$1 t0
  t0=$(now_ms)
  "$REDIS_SERVER" "$WORK/m$i/redis.conf" >> "$WORK/m$i/redis.log" 2>&1 &
  PID[$i]=$!
  wait_for "m$i PING" sh -c "[ \"\$('$REDIS_CLI' -h $(ip_of "$i") -p $PORT PING)\" = PONG ]"
  log "m$i up on $(ip_of "$i"):$PORT pid ${PID[$i]} in $(( $(now_ms) - t0 )) ms"
}

stop() {   # stop I SIGNAL
  local i=$1 sig=${2:-TERM} t0
  t0=$(now_ms)
  kill "-$sig" "${PID[$i]}"
  wait "${PID[$i]}" 2>/dev/null || true
  log "m$i stopped by SIG$sig in $(( $(now_ms) - t0 )) ms"
  unset "PID[$i]"
}

role_of() { cli "$1" INFO replication | tr -d '\r' | awk -F: '$1=="role"{print $2}'; }
dbsize()  { cli "$1" DBSIZE | tr -d '\r'; }
rss_kb()  { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }
expect_dbsize() { local i=$1 n=$2; wait_for "m$i DBSIZE=$n" sh -c "[ \"\$('$REDIS_CLI' -h $(ip_of "$i") -p $PORT DBSIZE)\" = $n ]"; log "m$i DBSIZE=$n"; }
expect_role() { local i=$1 r=$2; wait_for "m$i role=$r" sh -c "'$REDIS_CLI' -h $(ip_of "$i") -p $PORT INFO replication | tr -d '\r' | grep -qx 'role:$r'"; log "m$i role:$r"; }
link_up() { local i=$1; wait_for "m$i master_link_status:up" sh -c "'$REDIS_CLI' -h $(ip_of "$i") -p $PORT INFO replication | tr -d '\r' | grep -qx 'master_link_status:up'"; }

# RESP-encoded SETs, fed through redis-cli --pipe (one round trip per batch)
write_keys() {   # write_keys I FROM TO
  local i=$1 from=$2 to=$3 out
  out=$(seq "$from" "$to" | awk '{k="key:"$1; v="val:"$1; printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v}' | cli "$i" --pipe 2>&1)
  echo "$out" | grep -q 'errors: 0' || fail "pipe write: $out"
}

log "work dir $WORK; redis $("$REDIS_SERVER" --version | awk '{print $3}')"

# ---- 0. coexistence with a default-style instance on 127.0.0.1:6379 -------
DEFAULT_PID=""
if "$REDIS_CLI" -h 127.0.0.1 -p 6379 PING >/dev/null 2>&1; then
  log "something already answers on 127.0.0.1:6379 (e.g. Debian's redis-server service); binding $NET.x:6379 must still work"
else
  mkdir -p "$WORK/default"
  "$REDIS_SERVER" --bind 127.0.0.1 --port 6379 --dir "$WORK/default" --save "" --appendonly no --daemonize no \
    > "$WORK/default/redis.log" 2>&1 &
  DEFAULT_PID=$!; PID[0]=$DEFAULT_PID
  wait_for "default instance on 127.0.0.1:6379" "$REDIS_CLI" -h 127.0.0.1 -p 6379 PING
  "$REDIS_CLI" -h 127.0.0.1 -p 6379 SET where default >/dev/null
fi

# ---- 1. start 3 members -----------------------------------------------------
write_conf 1 master; write_conf 2 replica; write_conf 3 replica
for i in 1 2 3; do start "$i"; done
expect_role 1 master; expect_role 2 slave; expect_role 3 slave
link_up 2; link_up 3
[[ "$(cli 1 INFO replication | tr -d '\r' | awk -F: '$1=="connected_slaves"{print $2}')" == 2 ]] || fail "master does not see 2 replicas"
cli 1 INFO replication | tr -d '\r' | grep -E '^(role|connected_slaves|slave[0-9])'
cli 2 INFO replication | tr -d '\r' | grep -E '^(role|master_host|master_port|master_link_status)'
# ROLE: first line is master|slave (cheaper to parse than INFO)
log "ROLE m1: $(cli 1 ROLE | tr '\n' ' ')"
log "ROLE m2: $(cli 2 ROLE | tr '\n' ' ')"
[[ "$(cli 2 ROLE | head -1)" == slave ]] || fail "ROLE m2 not slave"
if [[ -n $DEFAULT_PID ]]; then
  [[ "$(cli 1 GET where | tr -d '\r')" == "" ]] || fail "127.0.10.1 answered with the default instance's data"
  [[ "$("$REDIS_CLI" -h 127.0.0.1 -p 6379 GET where)" == default ]] || fail "default instance lost"
  log "127.0.0.1:6379 and $NET.1:6379 coexist as separate servers"
fi

# ---- 2. write 10,000 keys on the master, replicas catch up -------------------
t0=$(now_ms); write_keys 1 1 10000; log "10000 SETs piped in $(( $(now_ms) - t0 )) ms"
expect_dbsize 1 10000
t0=$(now_ms); expect_dbsize 2 10000; expect_dbsize 3 10000; log "replicas at 10000 after $(( $(now_ms) - t0 )) ms"
[[ "$(cli 3 GET key:4242 | tr -d '\r')" == val:4242 ]] || fail "replica value mismatch"
cli 2 SET x y 2>&1 | grep -q READONLY || fail "replica accepted a write"
for i in 1 2 3; do log "m$i RSS $(rss_kb "${PID[$i]}") kB"; done

# ---- 3. SIGKILL a replica, write more, restart it: it resyncs ----------------
stop 3 KILL
write_keys 1 10001 11000
expect_dbsize 2 11000
start 3; link_up 3; expect_dbsize 3 11000
grep -E 'Partial resynchronization|Full resync|MASTER <-> REPLICA sync: Finished' "$WORK/m3/redis.log" | tail -3 | sed 's/^/    m3 log: /'

# ---- 4. switchover with FAILOVER (Redis >= 6.2): m1 -> m2 --------------------
t0=$(now_ms)
cli 1 FAILOVER TO "$(ip_of 2)" "$PORT" TIMEOUT 10000 | grep -q OK || fail "FAILOVER refused"
expect_role 2 master; expect_role 1 slave; link_up 1
log "FAILOVER m1->m2 done in $(( $(now_ms) - t0 )) ms"
# FAILOVER only swaps the pair; m3 still replicates from m1 (now a replica: chained)
log "m3 after FAILOVER: master_host=$(cli 3 INFO replication | tr -d '\r' | awk -F: '$1=="master_host"{print $2}')"
cli 3 REPLICAOF "$(ip_of 2)" "$PORT" >/dev/null; link_up 3
write_keys 2 11001 11500
for i in 1 2 3; do expect_dbsize "$i" 11500; done

# ---- 5. manual switchover back: m2 -> m1 with REPLICAOF ---------------------
# (berth: pause writes first, or wait until replica offset == master offset)
cli 2 CLIENT PAUSE 5000 WRITE >/dev/null
moff=$(cli 2 INFO replication | tr -d '\r' | awk -F: '$1=="master_repl_offset"{print $2}')
wait_for "m1 caught up to $moff" sh -c "[ \"\$('$REDIS_CLI' -h $(ip_of 1) -p $PORT INFO replication | tr -d '\r' | awk -F: '\$1==\"slave_repl_offset\"{print \$2}')\" = $moff ]"
cli 1 REPLICAOF NO ONE >/dev/null
cli 2 REPLICAOF "$(ip_of 1)" "$PORT" >/dev/null
cli 3 REPLICAOF "$(ip_of 1)" "$PORT" >/dev/null
cli 2 CLIENT UNPAUSE >/dev/null
expect_role 1 master; link_up 2; link_up 3
write_keys 1 11501 12000
for i in 1 2 3; do expect_dbsize "$i" 12000; done

# ---- 6. SIGTERM all, restart all with the same dirs: data kept ---------------
# the config files still say m1 master, m2/m3 replicaof m1 == the current topology
for i in 3 2 1; do stop "$i" TERM; done
for i in 1 2 3; do start "$i"; done
expect_role 1 master; link_up 2; link_up 3
for i in 1 2 3; do expect_dbsize "$i" 12000; done
[[ "$(cli 2 GET key:11999 | tr -d '\r')" == val:11999 ]] || fail "data lost after restart"
for i in 1 2 3; do log "m$i RSS $(rss_kb "${PID[$i]}") kB"; done
t0=$(now_ms); for i in 1 2 3; do stop "$i" TERM; done; log "all stopped in $(( $(now_ms) - t0 )) ms"

log "PASS"
