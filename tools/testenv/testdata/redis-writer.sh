# A Redis client for a pod on a real node (run with bash -c): writes `w:<n>` through the `write`
# Service about every 5 ms on one connection (bash's /dev/tcp, RESP inline commands; no process
# per write), reconnecting after any reply but `+OK` (a refused write, a closed connection, no
# answer within 2 s), so it follows the Service to the new master. Prints `ack <n> <unix time>`
# for every `+OK`, `err <n> <unix time> <reply>` for anything else, `stopped` once /tmp/stop
# exists, into /tmp/writes, then waits. The pod must be privileged: a connection kube-proxy sent
# to a member that is gone gets no answer, and Linux retries a SYN for about 2 minutes (ICMP
# unreachable is a soft error): one retry (tcp_syn_retries) bounds that at ~3 s.
# Used by crates/berth/tests/operator_real_redis.rs and bench/real-rollout.sh.
exec >/tmp/writes 2>/dev/null
echo 1 > /proc/sys/net/ipv4/tcp_syn_retries || { echo "cannot set tcp_syn_retries"; exec sleep infinity; }
mkfifo /tmp/tick && exec 4<>/tmp/tick
n=0
connected=0
while [ ! -e /tmp/stop ]; do
  n=$((n + 1))
  if [ "$connected" = 0 ] && exec 3<>/dev/tcp/redis-write/6379; then connected=1; fi
  reply=
  if [ "$connected" = 1 ] && printf 'SET w:%d %d\r\n' "$n" "$n" >&3; then read -r -t 2 reply <&3; fi
  if [ "$reply" = $'+OK\r' ]; then
    echo "ack $n $EPOCHREALTIME"
  else
    echo "err $n $EPOCHREALTIME ${reply%$'\r'}"
    [ "$connected" = 1 ] && exec 3<&-
    connected=0
  fi
  read -r -t 0.005 -u 4 || true
done
echo stopped
exec sleep infinity
