# bench/lib.sh: what every benchmark script shares (sourced, not run).
#   log MESSAGE...      a stamped line on stderr
#   now / now_ms        the time in seconds (with nanoseconds) / milliseconds since the epoch
#   wait_for WHAT CMD   runs CMD (eval) every ~0.1 s until it succeeds; after the caller's
#                       $TIMEOUT seconds logs what was awaited and returns 1

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
now() { date +%s.%N; }
now_ms() { date +%s%3N; }

wait_for() {
  local what=$1 cmd=$2 start=$SECONDS
  until eval "$cmd" >/dev/null 2>&1; do
    ((SECONDS - start > TIMEOUT)) && { log "timed out waiting for $what"; return 1; }
    sleep 0.1
  done
}
