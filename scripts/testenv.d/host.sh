# scripts/testenv.d/host.sh: the real nodes' changes to the host (sourced by scripts/testenv):
# the network namespace, veth, firewall and DNAT, sysctls and cgroups that `up --real-nodes`
# creates, each recorded in $RUN/host/changes before it is made, and undone newest first by
# `down` (undo_host_changes). Names and addresses come from scripts/testenv.d/nodes.sh.

# ---------------------------------------------------------------------------
# host state: recorded before it is changed, undone by down
# ---------------------------------------------------------------------------

# host_note KIND VALUE: records that up changed something (undone in reverse order)
host_note() { mkdir -p "$HOST_STATE"; printf '%s %s\n' "$1" "$2" >>"$HOST_STATE/changes"; }

set_host_sysctls() {
  local kv key val old
  for kv in "${KUBELET_SYSCTLS[@]}"; do
    key=${kv%%=*} val=${kv#*=}
    old=$(sysctl -n "$key")
    [[ $old == "$val" ]] && continue
    host_note sysctl "$key=$old"
    sysctl -qw "$key=$val"
  done
}

# setup_network: netns, veth, addresses, routes, firewall and DNAT on the host.
setup_network() {
  local n
  [[ -e $NETNS_PATH ]] && die "up: netns $NETNS exists (another instance with BERTH_TESTENV_NET_ID=$NET_ID?)"
  ip link show "$HOST_LINK" >/dev/null 2>&1 && die "up: link $HOST_LINK exists (another instance?)"
  log "up: network: netns $NETNS, veth $HOST_LINK/$NS_LINK, $NET.0.0/16"
  # `ip netns add` creates /run/netns and makes it a mount point (for mount propagation)
  [[ -d /run/netns ]] || host_note dir /run/netns
  grep -q ' /run/netns ' /proc/self/mountinfo || host_note mount /run/netns
  ip netns add "$NETNS"; host_note netns "$NETNS"
  ip link add "$HOST_LINK" type veth peer name "$NS_LINK" netns "$NETNS"; host_note link "$HOST_LINK"
  ip addr add "$HOST_LINK_IP/24" dev "$HOST_LINK"
  sysctl -qw "net.ipv4.conf.$HOST_LINK.route_localnet=1"   # dies with the link
  ip link set "$HOST_LINK" up
  ip route add "$NET.0.0/16" via "$NS_LINK_IP" dev "$HOST_LINK"
  in_netns ip link set lo up
  in_netns ip addr add "$NS_LINK_IP/24" dev "$NS_LINK"
  for ((n = 1; n <= REAL_NODES; n++)); do in_netns ip addr add "$(node_ip "$n")/32" dev "$NS_LINK"; done
  in_netns ip link set "$NS_LINK" up
  in_netns ip route add default via "$HOST_LINK_IP"
  in_netns sysctl -qw net.ipv4.ip_forward=1                  # the netns' own
  in_netns sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
  setup_firewall
}

# setup_firewall: the confinement rule, and the DNAT that makes the apiserver reachable.
setup_firewall() {
  note_new_tables filter nat
  iptables -w -N "$FW_CHAIN"; host_note chain "filter $FW_CHAIN"
  iptables -w -A "$FW_CHAIN" -o "$HOST_LINK" -j RETURN
  iptables -w -A "$FW_CHAIN" -o lo -j RETURN
  iptables -w -A "$FW_CHAIN" -j DROP
  iptables -w -I FORWARD -s "$NET.0.0/16" -j "$FW_CHAIN"
  iptables -w -I FORWARD -i "$HOST_LINK" -j "$FW_CHAIN"
  iptables -w -I OUTPUT -s "$NET.0.0/16" -j "$FW_CHAIN"
  # the host itself: from the netns only the apiserver (DNATed) and replies to the host
  iptables -w -N "$FW_IN_CHAIN"; host_note chain "filter $FW_IN_CHAIN"
  iptables -w -A "$FW_IN_CHAIN" -m conntrack --ctstate ESTABLISHED,RELATED -j RETURN
  iptables -w -A "$FW_IN_CHAIN" -d "$HOST" -p tcp --dport "$APISERVER_PORT" -m conntrack --ctstate DNAT -j RETURN
  iptables -w -A "$FW_IN_CHAIN" -j DROP
  iptables -w -I INPUT -i "$HOST_LINK" -j "$FW_IN_CHAIN"
  iptables -w -t nat -N "$DNAT_CHAIN"; host_note chain "nat $DNAT_CHAIN"
  iptables -w -t nat -A "$DNAT_CHAIN" -d "$HOST_LINK_IP" -p tcp --dport "$APISERVER_PORT" \
    -j DNAT --to-destination "$HOST:$APISERVER_PORT"
  iptables -w -t nat -I PREROUTING -i "$HOST_LINK" -j "$DNAT_CHAIN"
}

# note_new_tables TABLE...: with iptables on nf_tables, the first rule creates its table;
# tables that do not exist yet are noted, so that down deletes them (when empty) again.
note_new_tables() {
  local t
  iptables -V | grep -q nf_tables || return 0
  command -v nft >/dev/null || die "up: nft not found (Debian package nftables)"
  for t in "$@"; do nft list table ip "$t" >/dev/null 2>&1 || host_note table "$t"; done
}

# remove_table_if_empty TABLE: deletes an nf_tables iptables table without rules or own chains.
remove_table_if_empty() {
  local t=$1
  nft list table ip "$t" >/dev/null 2>&1 || return 0
  if iptables-save -t "$t" | grep -qE '^-A|^:[A-Z-]+ - '; then
    log "down: iptables table $t is not empty (another instance?), leaving it"
  else
    nft delete table ip "$t"
  fi
}

# remove_chain TABLE CHAIN: deletes every jump to CHAIN, then CHAIN.
remove_chain() {
  local table=$1 chain=$2 rule
  while rule=$(iptables -w -t "$table" -S | grep -m1 -- "-j $chain\$"); do
    read -ra rule <<<"${rule/-A/-D}"
    iptables -w -t "$table" "${rule[@]}" || break
  done
  iptables -w -t "$table" -F "$chain" 2>/dev/null || true
  iptables -w -t "$table" -X "$chain" 2>/dev/null || true
}

# undo_host_changes: reverts the changes in $HOST_STATE/changes, newest first.
undo_host_changes() {
  local f=$HOST_STATE/changes kind val
  [[ -f $f ]] || return 0
  while read -r kind val; do
    case $kind in
      sysctl) sysctl -qw "$val" || log "down: could not restore sysctl $val" ;;
      chain) remove_chain ${val% *} ${val#* } ;;
      link) ip link del "$val" 2>/dev/null || true ;;
      netns) ip netns del "$val" 2>/dev/null || true ;;
      table) remove_table_if_empty "$val" ;;
      mount) [[ -z "$(ls -A "$val" 2>/dev/null)" ]] && umount "$val" 2>/dev/null || true ;;
      cgroup) remove_cgroup "$val" ;;
      dir) rmdir "$val" 2>/dev/null || true ;;
      tree) rm -rf -- "$val" ;;
    esac
  done < <(tac "$f")
  rm -f "$f"
}

# ---------------------------------------------------------------------------
# cgroups (v1, cgroupfs driver): one root per node in every hierarchy
# ---------------------------------------------------------------------------

cgroup_hierarchies() { awk '$3 == "cgroup" || $3 == "cgroup2" { print $2 }' /proc/self/mounts; }

make_cgroup() {
  local cg=$1 h
  host_note cgroup "$cg"
  for h in $(cgroup_hierarchies); do
    mkdir -p "$h$cg"
    if [[ -f $h/cpuset.cpus ]]; then
      cat "$h/cpuset.cpus" >"$h$cg/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h$cg/cpuset.mems"
    fi
  done
}

# kill_cgroup CG: SIGKILLs every process left in CG (containers whose shim is gone).
kill_cgroup() {
  local cg=$1 h pid
  for h in $(cgroup_hierarchies); do
    [[ -d $h$cg ]] || continue
    for pid in $(find "$h$cg" -name cgroup.procs -exec cat {} + 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
  done
}

# remove_cgroup CG: kills what is left in CG and removes it (subgroups first) from every
# hierarchy; killed processes take a moment to leave, so removal is retried for up to 10 s.
remove_cgroup() {
  local cg=$1 h left deadline=$((SECONDS + 10))
  kill_cgroup "$cg"
  while :; do
    left=()
    for h in $(cgroup_hierarchies); do
      [[ -d $h$cg ]] || continue
      find "$h$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [[ -d $h$cg ]] && left+=("$h$cg")
    done
    ((${#left[@]} == 0)) && return 0
    if ((SECONDS >= deadline)); then
      log "down: cgroup(s) ${left[*]} could not be removed"
      return 0
    fi
    sleep 0.2
  done
}
