#!/usr/bin/env bash
# etcd 3-member cluster demo, one loopback address per member, all on the same
# ports (client 2379, peer 2380), each with its own --data-dir.
#
#   m0..m4 = 127.0.30.1..5
#
# Needs: apt-get install etcd-server etcd-client   (Debian 12: 3.4.23)
# Checks: health of all, put/get, leader detection, move-leader, SIGKILL of the
# leader + re-election, full SIGTERM stop/start keeps data, scale 3 -> 5 with
# `member add` (voter, and learner + promote), scale back 5 -> 3 with `member remove`.
# Exits non-zero on the first failed check. KEEP=1 keeps the temp dir.
set -euo pipefail

NET=${NET:-127.0.30}
CPORT=2379 PPORT=2380
TIMEOUT=${TIMEOUT:-30}
ETCD=${ETCD:-/usr/bin/etcd}
ETCDCTL_BIN=${ETCDCTL_BIN:-/usr/bin/etcdctl}
TOKEN=berth-demo-$$
export ETCDCTL_API=3   # the default for the 3.4 client already; required for 3.3 and older
# etcd reads ETCD_* environment variables as flags: make sure none leak in
for v in $(env | grep -o '^ETCD_[A-Z_]*' || true); do unset "$v"; done

command -v "$ETCD" >/dev/null || { echo "apt-get install etcd-server etcd-client" >&2; exit 2; }
command -v "$ETCDCTL_BIN" >/dev/null || { echo "apt-get install etcd-client" >&2; exit 2; }

WORK=$(mktemp -d /tmp/berth-etcd-demo.XXXXXX)
declare -A PID=() ARGS=()

log()  { printf '[etcd-demo %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { log "FAIL: $*"; exit 1; }
now_ms() { date +%s%3N; }
ip_of() { echo "$NET.$(( $1 + 1 ))"; }          # m0 -> .1
curl_url() { echo "http://$(ip_of "$1"):$CPORT"; }
peer_url() { echo "http://$(ip_of "$1"):$PPORT"; }
eps() { local i s=""; for i in "$@"; do s+="${s:+,}$(curl_url "$i")"; done; echo "$s"; }
ctl() { local e=$1; shift; "$ETCDCTL_BIN" --endpoints="$e" --dial-timeout=2s --command-timeout=5s "$@"; }
initial_cluster() { local i s=""; for i in "$@"; do s+="${s:+,}m$i=$(peer_url "$i")"; done; echo "$s"; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

stop_all() {
  for i in "${!PID[@]}"; do kill -TERM "${PID[$i]}" 2>/dev/null || true; done
  for i in "${!PID[@]}"; do
    for _ in $(seq 1 100); do kill -0 "${PID[$i]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PID[$i]}" 2>/dev/null || true
    wait "${PID[$i]}" 2>/dev/null || true
    unset "PID[$i]"
  done
}
cleanup() {
  local rc=$?
  stop_all
  if [[ "${KEEP:-0}" == 1 || $rc -ne 0 ]]; then log "work dir kept: $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT INT TERM

wait_for() {
  local what=$1; shift
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    (( $(date +%s) < deadline )) || fail "timeout waiting for: $what"
    sleep 0.2
  done
}

start() {   # start I STATE(new|existing) INITIAL_CLUSTER   (args remembered for restarts)
  local i=$1 d="$WORK/m$1" t0
  mkdir -p "$d"
  if [[ $# -ge 3 ]]; then
    ARGS[$i]="--name m$i --data-dir $d/data
      --listen-client-urls $(curl_url "$i") --advertise-client-urls $(curl_url "$i")
      --listen-peer-urls $(peer_url "$i") --initial-advertise-peer-urls $(peer_url "$i")
      --initial-cluster $3 --initial-cluster-state $2 --initial-cluster-token $TOKEN
      --logger zap --log-outputs stderr"
  fi
  t0=$(now_ms)
  # shellcheck disable=SC2086
  "$ETCD" ${ARGS[$i]} >> "$d/etcd.log" 2>&1 &
  PID[$i]=$!
  echo "$(now_ms) $t0" > "$d/started"
  log "m$i pid ${PID[$i]} on $(ip_of "$i") ($2)"
}

healthy() { ctl "$(curl_url "$1")" endpoint health 2>&1 | grep -q 'is healthy'; }
wait_healthy() {
  local i t0; t0=$(now_ms)
  for i in "$@"; do wait_for "m$i healthy" healthy "$i"; done
  log "healthy: $(for i in "$@"; do printf 'm%s ' "$i"; done)(within $(( $(now_ms) - t0 )) ms)"
}

stop() {   # stop I [SIGNAL]
  local i=$1 sig=${2:-TERM} t0 rc=0
  t0=$(now_ms)
  kill "-$sig" "${PID[$i]}"
  wait "${PID[$i]}" 2>/dev/null || rc=$?
  log "m$i stopped by SIG$sig in $(( $(now_ms) - t0 )) ms (exit status $rc)"
  unset "PID[$i]"
}

# `endpoint status -w fields` prints  "MemberID" : 123  and  "Leader" : 123  (decimal)
member_id_dec() { ctl "$(curl_url "$1")" endpoint status -w fields | awk -F' : ' '/^"MemberID"/{print $2}'; }
leader_id_dec() { ctl "$(curl_url "$1")" endpoint status -w fields | awk -F' : ' '/^"Leader"/{print $2}'; }
is_leader()     { [[ "$(member_id_dec "$1")" == "$(leader_id_dec "$1")" && -n "$(leader_id_dec "$1")" ]]; }
leader_among()  { local i; for i in "$@"; do is_leader "$i" 2>/dev/null && { echo "$i"; return 0; }; done; return 1; }
hex_id() { printf '%x' "$(member_id_dec "$1")"; }

# Graceful stop of a whole cluster: followers one by one (waiting for each), leader last.
# (SIGTERM to all members at once made the leader take ~7 s to exit, 3 of 3 tries;
#  followers-first: leader exits in ~35 ms; leader-first: ~140 ms, it hands leadership off.)
stop_cluster() {
  local t0 L i; t0=$(now_ms)
  L=$(leader_among "$@" 2>/dev/null || true)
  for i in "$@"; do [[ $i != "$L" ]] && stop "$i" TERM; done
  [[ -n $L ]] && stop "$L" TERM
  log "cluster stopped (followers first, leader m${L:-?} last) in $(( $(now_ms) - t0 )) ms"
}

log "work dir $WORK; $("$ETCD" --version | head -1)"

# ---- 1. three members --------------------------------------------------------
IC=$(initial_cluster 0 1 2)
for i in 0 1 2; do start "$i" new "$IC"; done
wait_healthy 0 1 2
ctl "$(eps 0 1 2)" endpoint health
ctl "$(eps 0 1 2)" endpoint status -w table
ctl "$(eps 0)" member list -w table
for i in 0 1 2; do log "m$i RSS $(rss_kb "${PID[$i]}") kB"; done

ctl "$(eps 0)" put /berth/hello world >/dev/null
[[ "$(ctl "$(eps 2)" get /berth/hello --print-value-only)" == world ]] || fail "get via m2"
log "put via m0, read via m2: ok"

# ---- 2. leader: detect and move ----------------------------------------------
L=$(leader_among 0 1 2) || fail "no leader"
log "leader is m$L (id $(hex_id "$L"))"
T=$(( (L + 1) % 3 ))
t0=$(now_ms)
ctl "$(eps "$L")" move-leader "$(hex_id "$T")"
wait_for "m$T leader" is_leader "$T"
log "move-leader m$L -> m$T took $(( $(now_ms) - t0 )) ms"

# ---- 3. SIGKILL the leader: re-election, restart rejoins ----------------------
L=$(leader_among 0 1 2)
t0=$(now_ms)
stop "$L" KILL
OTHERS=(); for i in 0 1 2; do [[ $i != "$L" ]] && OTHERS+=("$i"); done
wait_for "new leader" leader_among "${OTHERS[@]}"
log "after SIGKILL of leader m$L: new leader m$(leader_among "${OTHERS[@]}") within $(( $(now_ms) - t0 )) ms"
ctl "$(eps "${OTHERS[0]}")" put /berth/while-down yes >/dev/null
start "$L" restart
wait_healthy "$L"
[[ "$(ctl "$(eps "$L")" get /berth/while-down --print-value-only)" == yes ]] || fail "restarted m$L missed a write"

# ---- 4. SIGTERM all, start all with the same data dirs: data kept -------------
stop_cluster 0 1 2
# same flags incl. --initial-cluster-state new: ignored because data-dir has a WAL
for i in 0 1 2; do start "$i" restart; done
wait_healthy 0 1 2
[[ "$(ctl "$(eps 1)" get /berth/hello --print-value-only)" == world ]] || fail "data lost after restart"
log "data kept across full restart"
grep -h -iE '"msg":"restarting local member"' "$WORK/m0/etcd.log" | tail -1 | cut -c1-200 | sed 's/^/    m0 log: /' || true

# ---- 5. scale 3 -> 5 ------------------------------------------------------------
# member add is refused with "etcdserver: unhealthy cluster" until every member has
# been connected for 5 s (--strict-reconfig-check, default on): retry until accepted
member_add() {   # member_add NAME ARGS... -> prints etcdctl output
  local deadline=$(( $(date +%s) + TIMEOUT )) out t0; t0=$(now_ms)
  until out=$(ctl "$(eps 0 1 2)" member add "$@" 2>&1); do
    echo "$out" | grep -q 'unhealthy cluster' || fail "member add $*: $out"
    (( $(date +%s) < deadline )) || fail "member add $*: still $out"
    sleep 0.5
  done
  log "member add $1 accepted after $(( $(now_ms) - t0 )) ms of retries" >&2
  echo "$out"
}
# m3 as a voting member: member add, then start with --initial-cluster-state existing
out=$(member_add m3 --peer-urls="$(peer_url 3)")
echo "$out" | sed 's/^/    /'
IC3=$(echo "$out" | sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p')
[[ -n $IC3 ]] || fail "member add m3 printed no ETCD_INITIAL_CLUSTER"
start 3 existing "$IC3"
wait_healthy 3
# m4 as a learner (3.4+), then promote once it has caught up
out=$(member_add m4 --learner --peer-urls="$(peer_url 4)")
IC4=$(echo "$out" | sed -n 's/^ETCD_INITIAL_CLUSTER="\(.*\)"$/\1/p')
start 4 existing "$IC4"
# take the id from `member add` output: an unstarted member has an empty name in `member list`
M4=$(echo "$out" | awk '/^Member [0-9a-f]+ added/{print $2}')
t0=$(now_ms)
wait_for "promote m4" ctl "$(eps 0 1 2)" member promote "$M4"
log "learner m4 promoted after $(( $(now_ms) - t0 )) ms"
wait_healthy 0 1 2 3 4
ctl "$(eps 0 1 2 3 4)" endpoint status -w table
[[ "$(ctl "$(eps 4)" get /berth/hello --print-value-only)" == world ]] || fail "m4 lacks data"
for i in 3 4; do log "m$i RSS $(rss_kb "${PID[$i]}") kB"; done

# ---- 6. scale 5 -> 3 -------------------------------------------------------------
for i in 4 3; do
  id=$(ctl "$(eps 0)" member list | awk -F', ' -v n="m$i" '$3==n{print $1}')
  ctl "$(eps 0 1 2)" member remove "$id"
  # a removed member shuts itself down ("the member has been permanently removed")
  for _ in $(seq 1 50); do kill -0 "${PID[$i]}" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "${PID[$i]}" 2>/dev/null; then stop "$i" TERM; else wait "${PID[$i]}" 2>/dev/null || true; unset "PID[$i]"; log "m$i exited by itself after removal"; fi
done
wait_healthy 0 1 2
[[ $(ctl "$(eps 0)" member list | wc -l) == 3 ]] || fail "member list not 3"
ctl "$(eps 0)" put /berth/after-scale-down ok >/dev/null

stop_cluster 0 1 2
log "PASS"
