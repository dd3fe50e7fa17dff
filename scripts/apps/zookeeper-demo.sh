#!/usr/bin/env bash
# ZooKeeper 3-member ensemble demo, one loopback address per member, all on the
# same ports (client 2181, peer 2888, election 3888), each with its own dataDir.
# Runs the JVM directly (no Debian service scripts), in the foreground.
#
#   z1..z5 = 127.0.20.1..5
#
# Needs: apt-get install zookeeper   (Debian 12: 3.8.0, pulls in default-jre-headless)
# Usage: zookeeper-demo.sh [reconfig|rolling|both]   (default both)
#   reconfig: reconfigEnabled=true; 3 -> 5 with `reconfig -add`, then 5 -> 3 with
#             `reconfig -remove`; full stop/start keeps data.
#   rolling:  static config (reconfigEnabled=false); 3 -> 5 by starting 4,5 with the
#             5-member list and restarting 1,2,3 one by one (leader last), checking
#             that a leader exists and a write succeeds after every step.
# Exits non-zero on the first failed check. KEEP=1 keeps the temp dir.
set -euo pipefail

MODE=${1:-both}
NET=${NET:-127.0.20}
CLIENT_PORT=2181 PEER_PORT=2888 ELECTION_PORT=3888
TIMEOUT=${TIMEOUT:-60}
JAVA=${JAVA:-/usr/bin/java}
ZKCLI=${ZKCLI:-/usr/share/zookeeper/bin/zkCli.sh}
# zookeeper.jar's manifest Class-Path pulls netty, jackson, jetty, slf4j-api, ...
# slf4j-log4j12 + log4j-1.2 give it a logger (otherwise SLF4J NOP: no server log at all)
CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-log4j12.jar:/usr/share/java/log4j-1.2.jar
JVM_OPTS=${JVM_OPTS:--Xms32m -Xmx256m -XX:+UseSerialGC}
SUPER_PW=berth-demo
SUPER_DIGEST=$(printf 'super:%s' "$SUPER_PW" | openssl sha1 -binary | base64)

[[ -r /usr/share/java/zookeeper.jar && -x $JAVA ]] || { echo "apt-get install zookeeper" >&2; exit 2; }

WORK=$(mktemp -d /tmp/berth-zk-demo.XXXXXX)
declare -A PID=()

log()  { printf '[zk-demo %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { log "FAIL: $*"; exit 1; }
now_ms() { date +%s%3N; }
ip_of() { echo "$NET.$1"; }

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

# four-letter word over bash /dev/tcp (no nc in a minimal Debian; netcat-openbsd works too)
fourlw() { timeout 3 bash -c "exec 3<>/dev/tcp/$(ip_of "$1")/$CLIENT_PORT && printf %s '$2' >&3 && cat <&3" 2>/dev/null; }
mode_of() { fourlw "$1" srvr | awk '/^Mode:/{print $2}'; }
is_imok() { [[ "$(fourlw "$1" ruok)" == imok ]]; }
is_serving() { [[ "$(mode_of "$1")" =~ ^(leader|follower|observer)$ ]]; }
leader_among() { local i; for i in "$@"; do [[ "$(mode_of "$i")" == leader ]] && { echo "$i"; return 0; }; done; return 1; }
rss_kb() { awk '/^VmRSS/{print $2}' "/proc/$1/status"; }

# zkCli.sh: one command per invocation, or several lines on stdin (same session)
zkcli() { local i=$1; shift; "$ZKCLI" -server "$(ip_of "$i"):$CLIENT_PORT" "$@" 2>&1; }
zkcli_super() { local i=$1; shift; { echo "addauth digest super:$SUPER_PW"; printf '%s\n' "$@"; echo quit; } | "$ZKCLI" -server "$(ip_of "$i"):$CLIENT_PORT" 2>&1; }

server_line() { echo "server.$1=$(ip_of "$1"):$PEER_PORT:$ELECTION_PORT:participant;$(ip_of "$1"):$CLIENT_PORT"; }

write_conf() {   # write_conf DIR I reconfig|static MEMBERS...
  local base=$1 i=$2 kind=$3; shift 3
  local d="$base/z$i"
  mkdir -p "$d/data"
  echo "$i" > "$d/data/myid"
  cat > "$d/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} [myid:%X{myid}] - %-5p [%t:%C{1}@%L] - %m%n
EOF
  cat > "$d/zoo.cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$d/data
# listen only on the addresses in the server.N lines (the default, made explicit)
quorumListenOnAllIPs=false
4lw.commands.whitelist=srvr,mntr,ruok,conf,stat
# AdminServer (Jetty) would bind 0.0.0.0:8080 on every member -> clash. (With the
# Debian jars Jetty does not even load: "Unable to load jetty", but be explicit.)
admin.enableServer=false
EOF
  if [[ $kind == reconfig ]]; then
    cat >> "$d/zoo.cfg" <<EOF
reconfigEnabled=true
standaloneEnabled=false
dynamicConfigFile=$d/zoo.cfg.dynamic
EOF
    : > "$d/zoo.cfg.dynamic"
    for m in "$@"; do server_line "$m" >> "$d/zoo.cfg.dynamic"; done
  else
    cat >> "$d/zoo.cfg" <<EOF
reconfigEnabled=false
clientPort=$CLIENT_PORT
clientPortAddress=$(ip_of "$i")
EOF
    for m in "$@"; do echo "server.$m=$(ip_of "$m"):$PEER_PORT:$ELECTION_PORT" >> "$d/zoo.cfg"; done
  fi
}

start() {   # start DIR I   -> waits for ruok=imok
  local d="$1/z$2" i=$2 t0
  t0=$(now_ms)
  # shellcheck disable=SC2086
  "$JAVA" $JVM_OPTS \
    -Dzookeeper.log.dir="$d" \
    -Dlog4j.configuration="file:$d/log4j.properties" \
    -Dzookeeper.DigestAuthenticationProvider.superDigest="super:$SUPER_DIGEST" \
    -cp "$CP" org.apache.zookeeper.server.quorum.QuorumPeerMain "$d/zoo.cfg" \
    >> "$d/server.log" 2>&1 &
  PID[$i]=$!
  wait_for "z$i ruok" is_imok "$i"
  log "z$i pid ${PID[$i]}: imok $(( $(now_ms) - t0 )) ms after exec"
}

stop() {   # stop I [SIGNAL]
  local i=$1 sig=${2:-TERM} t0 rc=0
  t0=$(now_ms)
  kill "-$sig" "${PID[$i]}"
  wait "${PID[$i]}" 2>/dev/null || rc=$?
  log "z$i stopped by SIG$sig in $(( $(now_ms) - t0 )) ms (exit status $rc)"
  unset "PID[$i]"
}

expect_ensemble() {   # expect_ensemble MEMBERS...  -> exactly one leader, rest followers
  local i m leaders=0 deadline=$(( $(date +%s) + TIMEOUT )) t0
  t0=$(now_ms)
  for i in "$@"; do wait_for "z$i serving" is_serving "$i"; done
  while :; do
    leaders=0; local line=""
    for i in "$@"; do m=$(mode_of "$i"); line+="z$i=$m "; [[ $m == leader ]] && leaders=$((leaders+1)); done
    [[ $leaders == 1 ]] && break
    (( $(date +%s) < deadline )) || fail "want 1 leader, got: $line"
    sleep 0.2
  done
  log "ensemble: $line(all serving within $(( $(now_ms) - t0 )) ms)"
}

check_write_read() {  # check_write_read WRITER READER PATH VALUE
  local out
  out=$(zkcli "$1" create "$3" "$4") || true ; echo "$out" | grep -q "Created $3" || fail "create $3 via z$1: $out"
  out=$({ zkcli "$2" sync "$3"; zkcli "$2" get "$3"; }) || true ; echo "$out" | grep -qx "$4" || fail "get $3 via z$2: $out"
  log "wrote $3 via z$1, read it via z$2"
}

# ---------------------------------------------------------------------------
run_reconfig() {
  local W="$WORK/reconfig" i out
  log "=== dynamic reconfig mode ($W)"
  for i in 1 2 3; do write_conf "$W" "$i" reconfig 1 2 3; done
  sed 's/^/    /' "$W/z1/zoo.cfg" "$W/z1/zoo.cfg.dynamic"
  start "$W" 1
  log "z1 alone: srvr says: $(fourlw 1 srvr | head -1)"
  start "$W" 2; start "$W" 3
  expect_ensemble 1 2 3
  fourlw 1 srvr | sed 's/^/    z1 srvr: /'
  if command -v ss >/dev/null; then ss -ltnH | awk '{print $4}' | grep -E "^\[?(::ffff:)?$NET\.|:(2181|2888|3888|8080)$" | sort | sed 's/^/    listening: /'; fi
  for i in 1 2 3; do log "z$i RSS $(rss_kb "${PID[$i]}") kB"; done
  check_write_read 1 3 /berth hello

  # reconfig needs auth: plain client gets "Insufficient permission"
  out=$(zkcli 1 reconfig -add "$(server_line 4)") || true
  echo "$out" | grep -q 'Insufficient permission' && log "reconfig without auth: Insufficient permission (as expected)" \
    || fail "reconfig without auth did not fail as expected: $out"

  # scale 3 -> 5: start each new member with (current config + itself), then reconfig -add
  for i in 4 5; do
    local cur; cur=$(zkcli 1 config | grep -E '^server\.[0-9]+=' | sed -E 's/^server\.([0-9]+)=.*/\1/' | tr '\n' ' ')
    write_conf "$W" "$i" reconfig $cur "$i"
    start "$W" "$i"
    wait_for "z$i syncs as non-voting follower" is_serving "$i"
    log "z$i before reconfig -add: Mode=$(mode_of "$i")"
    out=$(zkcli_super 1 "reconfig -add $(server_line "$i")") || true
    echo "$out" | grep -q 'Committed new configuration' || fail "reconfig -add z$i: $out"
    log "reconfig -add server.$i committed: $(echo "$out" | grep -E '^version=' | head -1)"
  done
  expect_ensemble 1 2 3 4 5
  zkcli 5 config | grep -E '^(server\.|version=)' | sed 's/^/    config: /'
  out=$(zkcli 5 get /berth) || true; echo "$out" | grep -qx hello || fail "/berth lost after scale-up: $out"
  check_write_read 5 2 /berth5 five
  for i in 4 5; do log "z$i RSS $(rss_kb "${PID[$i]}") kB"; done

  # full stop / start of 5 with the same dirs (ZK rewrote zoo.cfg -> zoo.cfg.dynamic.<version>)
  log "z1 zoo.cfg now: $(grep dynamicConfigFile "$W/z1/zoo.cfg")"
  local t0; t0=$(now_ms); for i in 1 2 3 4 5; do stop "$i" TERM; done; log "all 5 stopped in $(( $(now_ms) - t0 )) ms"
  for i in 1 2 3 4 5; do start "$W" "$i"; done
  expect_ensemble 1 2 3 4 5
  out=$(zkcli 4 get /berth5) || true; echo "$out" | grep -qx five || fail "/berth5 lost after restart: $out"
  log "data kept across full restart"

  # scale 5 -> 3: remove 4 and 5, then stop them
  out=$(zkcli_super 2 "reconfig -remove 4,5") || true
  echo "$out" | grep -q 'Committed new configuration' || fail "reconfig -remove: $out"
  log "reconfig -remove 4,5 committed"
  stop 4 TERM; stop 5 TERM
  expect_ensemble 1 2 3
  out=$(zkcli 3 get /berth5) || true; echo "$out" | grep -qx five || fail "/berth5 lost after scale-down: $out"
  stop_all
}

run_rolling() {
  local W="$WORK/rolling" i out L
  log "=== static config, rolling restart mode ($W)"
  for i in 1 2 3; do write_conf "$W" "$i" static 1 2 3; done
  sed 's/^/    /' "$W/z1/zoo.cfg"
  for i in 1 2 3; do start "$W" "$i"; done
  expect_ensemble 1 2 3
  check_write_read 2 1 /roll hello

  # new members first, with the full 5-member list
  for i in 4 5; do write_conf "$W" "$i" static 1 2 3 4 5; start "$W" "$i"; done
  sleep 2
  log "z4/z5 with old members still on 3-list: z4=$(mode_of 4) z5=$(mode_of 5)"
  # restart old members one by one, leader last
  L=$(leader_among 1 2 3) || fail "no leader"
  local order=() n=1
  for i in 1 2 3; do [[ $i != "$L" ]] && order+=("$i"); done; order+=("$L")
  for i in "${order[@]}"; do
    write_conf "$W" "$i" static 1 2 3 4 5
    stop "$i" TERM
    if [[ $i == "$L" ]]; then
      local t0 others=(); t0=$(now_ms)
      for m in 1 2 3 4 5; do [[ -n "${PID[$m]:-}" ]] && others+=("$m"); done
      wait_for "new leader after stopping leader z$L" leader_among "${others[@]}"
      log "leader z$L stopped: new leader z$(leader_among "${others[@]}") within $(( $(now_ms) - t0 )) ms"
    fi
    start "$W" "$i"
    local up=(); for m in 1 2 3 4 5; do [[ -n "${PID[$m]:-}" ]] && up+=("$m"); done
    expect_ensemble "${up[@]}"
    check_write_read "$i" 5 "/roll$n" "v$n"; n=$((n+1))
  done
  expect_ensemble 1 2 3 4 5
  out=$(zkcli 4 get /roll) || true; echo "$out" | grep -qx hello || fail "/roll lost: $out"
  log "rolling 3 -> 5 done, data kept"
  stop_all
}

case $MODE in
  reconfig) run_reconfig ;;
  rolling)  run_rolling ;;
  both)     run_reconfig; run_rolling ;;
  *) echo "usage: $0 [reconfig|rolling|both]" >&2; exit 2 ;;
esac
log "PASS"
