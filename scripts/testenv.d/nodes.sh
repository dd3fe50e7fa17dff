# scripts/testenv.d/nodes.sh: real nodes beside kwok's fake ones (sourced by scripts/testenv;
# `scripts/testenv up --real-nodes N`).
#
# Layout (instance number I = $BERTH_TESTENV_NET_ID, default 0; the /16 is 10.(200+I)):
#
#   host netns                          netns berth-testenv-I (created here)
#   127.0.0.1:$APISERVER_PORT  <-DNAT-  bt<I>h 10.x.255.1/24 ==veth== bt<I>n 10.x.255.2/24 (CoreDNS :53)
#                                                                     + node IPs 10.x.255.(10+n)
#                                                                     cni<n> bridge 10.x.n.1/24 per node
#
# Everything of the nodes runs in the netns (nsenter --net, same mount namespace): one
# containerd + kubelet per node (own root/state/socket, cgroupRoot, CNI bridge and pod subnet),
# one kube-proxy (iptables mode) and one CoreDNS for all. So their iptables rules, routes and
# net sysctls die with the netns, two instances never share a chain, and the only way out of
# the netns is the veth to the host, where a firewall chain drops every packet from 10.x/16
# toward any interface but bt<I>h and lo, and the host itself accepts from the netns only the
# apiserver connections and replies. Nothing is masqueraded by us; the host's ip_forward is
# never changed. The apiserver stays on 127.0.0.1: packets to 10.x.255.1:$APISERVER_PORT from
# the veth are DNATed to it (route_localnet on bt<I>h only), and the `kubernetes` Service gets
# that address as its endpoint. Host state changed outside the netns (global sysctls set for
# kubelet, the firewall and DNAT chains, cgroups, mounts under $RUN, the veth) is recorded in
# $RUN/host and undone by `down` (scripts/testenv.d/host.sh). See docs/testing.md.

NET_ID=${BERTH_TESTENV_NET_ID:-0}
[[ $NET_ID =~ ^[0-9]+$ ]] && ((NET_ID < 50)) || die "BERTH_TESTENV_NET_ID must be 0..49 (got '$NET_ID')"
NET=10.$((200 + NET_ID))                 # the instance's /16: pods $NET.<n>.0/24, links $NET.255.0/24
NETNS=berth-testenv-$NET_ID
NETNS_PATH=/run/netns/$NETNS
HOST_LINK=bt${NET_ID}h                   # veth end in the host netns
NS_LINK=bt${NET_ID}n                     # veth end in the nodes' netns
HOST_LINK_IP=$NET.255.1                  # the apiserver, as the nodes and pods see it
NS_LINK_IP=$NET.255.2                    # CoreDNS, kube-proxy's health port
FW_CHAIN=BERTH-TESTENV-$NET_ID           # filter: drop toward interfaces we did not create
FW_IN_CHAIN=BERTH-TESTENV-$NET_ID-IN     # filter: the host accepts only the apiserver from the netns
DNAT_CHAIN=BERTH-TESTENV-$NET_ID-API     # nat: apiserver on the link -> 127.0.0.1
DNS_SERVICE_IP=10.96.0.10
NODES_DIR=$RUN/nodes
HOST_STATE=$RUN/host
CNI_BIN=${BERTH_TESTENV_CNI_BIN:-/usr/lib/cni}
REAL_NODE_LABEL=berth.io/node-kind       # =real on real nodes; also the taint key (NoSchedule)
# fixed paths the components use whatever their configuration says: kubelet's device-plugin
# socket, libcni's result cache, containerd's shim sockets, libmount's utab. Removed by `down`
# when `up` created them.
FIXED_DIRS=(/var/lib/kubelet /var/lib/cni /run/containerd /run/mount)
# sysctls kubelet insists on (it would set them itself); recorded and restored by `down`
KUBELET_SYSCTLS=(vm.overcommit_memory=1 kernel.panic=10 kernel.panic_on_oops=1)

node_name() { echo "real-node-$1"; }
node_ip() { echo "$NET.255.$((10 + $1))"; }
node_dir() { echo "$NODES_DIR/n$1"; }
node_cgroup() { echo "/berth-testenv-$NET_ID-n$1"; }
in_netns() { nsenter --net="$NETNS_PATH" "$@"; }
real_node_count() { cat "$NODES_DIR/count" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------------------
# processes in the netns
# ---------------------------------------------------------------------------

# start_in_netns LABEL EXE ARGS...: like `start`, for any executable, in the nodes' netns
# (only the network namespace changes: kubelet and containerd must share our mounts).
start_in_netns() {
  local label=$1 exe=$2 pid; shift 2
  log "up: starting $label (log: $RUN/$label.log)"
  echo "$exe" >"$RUN/$label.exe"
  printf '%q ' nsenter --net="$NETNS_PATH" "$exe" "$@" >"$RUN/$label.cmdline"
  setsid nsenter --net="$NETNS_PATH" "$exe" "$@" >"$RUN/$label.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$RUN/$label.pid"
  await_exec "$label" "$pid"
}

# ---------------------------------------------------------------------------
# credentials and configuration files
# ---------------------------------------------------------------------------

# sign_cert NAME SUBJECT EXT: an EC P-256 key and a certificate signed by our CA, in $RUN/pki.
sign_cert() {
  local name=$1 subj=$2 ext=$3 d=$RUN/pki
  (
    set -e
    cd "$d"
    printf '%b\n' "$ext" >"$name.ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" \
      -out "$name.csr" -subj "$subj" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out "$name.crt" -days 3650 -extfile "$name.ext" 2>/dev/null
  ) || die "up: openssl failed for $name (in $d)"
}

# write_kubeconfig FILE CERT_NAME: a kubeconfig for a component in the netns, reaching the
# apiserver at $HOST_LINK_IP (DNATed to 127.0.0.1), with the client certificate CERT_NAME.
write_kubeconfig() {
  local f=$1 c=$2 p=$RUN/pki
  cat >"$f" <<EOT
apiVersion: v1
kind: Config
clusters: [{name: berth-testenv, cluster: {server: "https://$HOST_LINK_IP:$APISERVER_PORT", certificate-authority: "$p/ca.crt"}}]
users: [{name: $c, user: {client-certificate: "$p/$c.crt", client-key: "$p/$c.key"}}]
contexts: [{name: berth-testenv, context: {cluster: berth-testenv, user: $c}}]
current-context: berth-testenv
EOT
}

write_containerd_config() {
  local n=$1 d
  d=$(node_dir "$n")
  cat >"$d/containerd.toml" <<EOT
# containerd of $(node_name "$n") (scripts/testenv up --real-nodes)
version = 2
root = "$d/containerd/root"
state = "$d/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root lacks CAP_SYS_RESOURCE here: runc must not lower oom_score_adj below ours
  restrict_oom_score_adj = true
  disable_apparmor = true
  # pod netns under the state dir, not the host's /run/netns: "down" unmounts them with the rest
  # of $NODES_DIR even when containerd was killed before it could remove its pods
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$d/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$d/cni"
EOT
}

write_cni_config() {
  local n=$1 d
  d=$(node_dir "$n")
  mkdir -p "$d/cni"
  cat >"$d/cni/10-berth.conflist" <<EOT
{
  "cniVersion": "0.4.0",
  "name": "berth-n$n",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni$n", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$d/cni-ipam",
        "ranges": [[{"subnet": "$NET.$n.0/24"}]], "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
EOT
}

write_kubelet_config() {
  local n=$1 d ip p=$RUN/pki
  d=$(node_dir "$n") ip=$(node_ip "$n")
  cat >"$d/kubelet.yaml" <<EOT
# kubelet of $(node_name "$n") (scripts/testenv up --real-nodes); see docs/testing.md
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: $ip
healthzPort: 10248
tlsCertFile: $p/kubelet-n$n.crt
tlsPrivateKeyFile: $p/kubelet-n$n.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $p/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$d/containerd.sock
# cgroup v1 only here (v2 has no memory controller on these machines); containerd 1.6 has
# no RuntimeConfig CRI call, so kubelet uses this driver (a fallback going away in 1.37)
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $(node_cgroup "$n")
cgroupsPerQOS: true
# root lacks CAP_SYS_RESOURCE: kubelet must not lower its own oom_score_adj
oomScoreAdj: 0
# the sysctls kubelet wants are set (and restored) by scripts/testenv, kubelet only checks
protectKernelDefaults: true
# imported images cannot be pulled again: never garbage-collect them
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: cluster.local
resolvConf: ""
failSwapOn: false
maxPods: 110
# each node its own (the field is podLogsDir): kubelets delete the log directories of pods they
# do not run, so nodes sharing /var/log/pods delete each other's pods' logs
podLogsDir: $d/pod-logs
registerWithTaints: [{key: $REAL_NODE_LABEL, value: real, effect: NoSchedule}]
serializeImagePulls: false
EOT
}

# prepare_node N: directories, credentials, configuration and cgroup root of node N.
prepare_node() {
  local n=$1 d name ip
  d=$(node_dir "$n") name=$(node_name "$n") ip=$(node_ip "$n")
  mkdir -p "$d/containerd" "$d/kubelet" "$d/pod-logs"
  sign_cert "kubelet-n$n" "/CN=$name" \
    "subjectAltName=IP:$ip,DNS:$name\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature"
  sign_cert "node-n$n" "/O=system:nodes/CN=system:node:$name" \
    "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature"
  write_kubeconfig "$d/kubeconfig" "node-n$n"
  write_containerd_config "$n"
  write_cni_config "$n"
  write_kubelet_config "$n"
  make_cgroup "$(node_cgroup "$n")"
}

# ---------------------------------------------------------------------------
# components
# ---------------------------------------------------------------------------

ctr_() { ctr --address "$(node_dir "$1")/containerd.sock" -n k8s.io "${@:2}"; }

start_containerd() {
  local n=$1
  start_in_netns "containerd-n$n" "$(command -v containerd)" --config "$(node_dir "$n")/containerd.toml"
}

# import_images N: every image tarball into node N's containerd (unpacked for the CRI) that it
# has not imported yet (listed in $RUN/images-n<N>.imported; a tarball's name changes with its
# inputs), so a running node gets the images built after it started.
import_images() {
  local n=$1 tar
  wait_for "up: containerd-n$n" "$UP_TIMEOUT" "$RUN/containerd-n$n.log" "containerd answers" -- ctr_ "$n" version
  for tar in $(image_tars); do
    [[ -f $tar ]] || die "up: image $tar is missing; run: $0 build"
    import_tar "$n" "$tar"
  done
}

# import_tar N TAR: image tarball TAR into node N's containerd unless it has imported it
# (listed in $RUN/images-n<N>.imported).
import_tar() {
  local n=$1 tar=$2 done=$RUN/images-n$1.imported
  touch "$done"
  grep -qxF "$tar" "$done" && return 0
  ctr_ "$n" images import "$tar" >>"$RUN/images-n$n.log" 2>&1 ||
    die "importing $tar into $(node_name "$n") failed; see $RUN/images-n$n.log"
  echo "$tar" >>"$done"
  log "imported ${tar##*/} into $(node_name "$n")"
}

# import_new_images: the images built since the running real nodes started, into each of them.
import_new_images() {
  local n count
  count=$(real_node_count)
  ((count > 0)) || die "images: no real nodes run (start them with: $0 up --real-nodes N)"
  for ((n = 1; n <= count; n++)); do import_images "$n"; done
}

start_kubelet() {
  local n=$1 d
  d=$(node_dir "$n")
  start_in_netns "kubelet-n$n" "$BIN/kubelet" --config "$d/kubelet.yaml" --kubeconfig "$d/kubeconfig" \
    --hostname-override "$(node_name "$n")" --node-ip "$(node_ip "$n")" \
    --root-dir "$d/kubelet" --cert-dir "$d/kubelet/pki" \
    --node-labels "$REAL_NODE_LABEL=real" --v 1
}

start_kube_proxy() {
  local f=$NODES_DIR/kube-proxy.yaml
  # written once: kube-proxy exits when its configuration file changes
  cat >"$f" <<EOT
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $NODES_DIR/kubeconfig}
hostnameOverride: $(node_name 1)
mode: iptables
clusterCIDR: $NET.0.0/16
bindAddress: $NS_LINK_IP
healthzBindAddress: $NS_LINK_IP:10256
metricsBindAddress: $NS_LINK_IP:10249
iptables: {localhostNodePorts: false}
# leave the (host-wide) conntrack sysctls alone
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOT
  start_in_netns kube-proxy "$BIN/kube-proxy" --config "$f" --v 1
  # /livez: /healthz also wants the node named by hostnameOverride to be schedulable
  wait_for "up: kube-proxy" "$UP_TIMEOUT" "$RUN/kube-proxy.log" "/livez answers" -- \
    curl -fs "http://$NS_LINK_IP:10256/livez"
}

start_coredns() {
  cat >"$NODES_DIR/Corefile" <<EOT
# the cluster DNS of the real nodes: cluster names only (nothing is forwarded), no cache
.:53 {
    errors
    health $NS_LINK_IP:8080
    ready $NS_LINK_IP:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $NODES_DIR/kubeconfig berth-testenv
        pods insecure
        ttl 1
    }
}
EOT
  start_in_netns coredns "$BIN/coredns" -conf "$NODES_DIR/Corefile"
  wait_for "up: coredns" "$UP_TIMEOUT" "$RUN/coredns.log" "/ready answers" -- \
    curl -fs "http://$NS_LINK_IP:8181/ready"
}

# apply_node_objects: the kube-dns Service (endpoint: CoreDNS on the link) and an endpoint
# for the `kubernetes` Service (the apiserver on the link), both selectorless.
apply_node_objects() {
  local f=$NODES_DIR/objects.yaml
  cat >"$f" <<EOT
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_SERVICE_IP
  ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-testenv
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: berth-testenv}
addressType: IPv4
endpoints: [{addresses: ["$NS_LINK_IP"], conditions: {ready: true}}]
ports: [{name: dns, port: 53, protocol: UDP}, {name: dns-tcp, port: 53, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes-testenv
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: berth-testenv}
addressType: IPv4
endpoints: [{addresses: ["$HOST_LINK_IP"], conditions: {ready: true}}]
ports: [{name: https, port: $APISERVER_PORT, protocol: TCP}]
EOT
  kubectl_ apply --server-side --field-manager berth-testenv -f "$f" >"$NODES_DIR/objects.log" 2>&1 ||
    die "up: 'kubectl apply -f $f' failed; see $NODES_DIR/objects.log"
}

# nodes_ready: all real nodes are Ready
nodes_ready() {
  local n names=()
  for ((n = 1; n <= REAL_NODES; n++)); do names+=("node/$(node_name "$n")"); done
  kubectl_ wait --for=condition=Ready "${names[@]}" --timeout 2s
}

check_node_prereqs() {
  local c
  ((EUID == 0)) || die "up: real nodes need root (netns, cgroups, iptables)"
  for c in containerd containerd-shim-runc-v2 runc ctr nsenter iptables ip sysctl; do
    command -v "$c" >/dev/null || die "up: $c not found (run scripts/setup: containerd runc iptables)"
  done
  [[ -x $CNI_BIN/bridge && -x $CNI_BIN/host-local ]] ||
    die "up: CNI plugins not found in $CNI_BIN (Debian package containernetworking-plugins)"
  for c in kubelet kube-proxy coredns crictl pause; do
    [[ -x $BIN/$c ]] || die "up: $BIN/$c is missing; run: $0 build"
  done
  [[ -d /sys/fs/cgroup/memory ]] || die "up: no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory"
}

# start_real_nodes: REAL_NODES real nodes, kube-proxy and CoreDNS (see the top of this file).
start_real_nodes() {
  local n d start=$SECONDS
  check_node_prereqs
  log "up: starting $REAL_NODES real node(s) in netns $NETNS"
  mkdir -p "$NODES_DIR"
  echo "$REAL_NODES" >"$NODES_DIR/count"
  for d in "${FIXED_DIRS[@]}"; do [[ -e $d ]] || host_note tree "$d"; done
  set_host_sysctls
  setup_network
  for ((n = 1; n <= REAL_NODES; n++)); do prepare_node "$n"; start_containerd "$n"; done
  sign_cert proxy "/O=system:masters/CN=berth-testenv-netns" \
    "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature"
  write_kubeconfig "$NODES_DIR/kubeconfig" proxy
  for ((n = 1; n <= REAL_NODES; n++)); do import_images "$n"; done
  apply_node_objects
  start_coredns
  for ((n = 1; n <= REAL_NODES; n++)); do start_kubelet "$n"; done
  wait_for "up: kubelet-n1" "$UP_TIMEOUT" "$RUN/kubelet-n1.log" "$REAL_NODES real node(s) are Ready" -- nodes_ready
  start_kube_proxy   # after the nodes exist: it waits for its own node's object
  start_volume_reaper
  log "up: $REAL_NODES real node(s) ready in $((SECONDS - start))s"
}

# reap_volumes: removes the directories of deleted PVs from $RUN/volumes. kwok's PVs are
# hostPath volumes (see kwok_config) that only a real node's kubelet creates, when a pod mounts
# one, and nothing removes them when the PV goes (the StorageClass says Delete): over a day of
# tests they filled the disk and the kubelets evicted their images. Only `pvc-*` directories
# are touched, and they are listed before the PVs: a directory exists only after its PV, so
# one listed first whose PV is missing from the later list was deleted, never about to be
# created. Nothing is removed when the PVs cannot be listed.
reap_volumes() {
  local dirs d pvs
  [[ -d $RUN/volumes ]] || return 0
  mapfile -t dirs < <(find "$RUN/volumes" -mindepth 1 -maxdepth 1 -type d -name 'pvc-*' -printf '%f\n')
  ((${#dirs[@]} > 0)) || return 0
  pvs=$(kubectl_ get pv -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}') || return 0
  for d in "${dirs[@]}"; do
    grep -qxF -- "$d" <<<"$pvs" && continue
    rm -rf -- "${RUN:?}/volumes/$d"
    log "reap: removed $RUN/volumes/$d (its PV is gone)"
  done
}

# cmd_reap_volumes: reap_volumes every BERTH_TESTENV_REAP_SECONDS (default 10) until killed;
# the volume-reaper component `up --real-nodes` starts.
cmd_reap_volumes() {
  local every=${BERTH_TESTENV_REAP_SECONDS:-10}
  while true; do
    reap_volumes
    sleep "$every" & wait $!
  done
}

start_volume_reaper() {
  log "up: starting volume-reaper (log: $RUN/volume-reaper.log)"
  readlink -f "$BASH" >"$RUN/volume-reaper.exe"   # what pid_of checks the pid runs
  setsid "$BASH" "$ROOT/scripts/testenv" reap-volumes >"$RUN/volume-reaper.log" 2>&1 </dev/null &
  echo "$!" >"$RUN/volume-reaper.pid"
  await_exec volume-reaper "$!"
}

# ---------------------------------------------------------------------------
# down
# ---------------------------------------------------------------------------

real_node_components() {
  local n count
  count=$(real_node_count)
  for ((n = 1; n <= count; n++)); do echo "$1-n$n"; done
}

# remove_pods N: stops and removes every pod sandbox of node N (CNI teardown included).
remove_pods() {
  local sock
  sock=$(node_dir "$1")/containerd.sock
  [[ -S $sock ]] || return 0
  timeout 60 "$BIN/crictl" --runtime-endpoint "unix://$sock" --timeout 20s rmp -fa >/dev/null 2>&1 ||
    log "down: removing the pods of $(node_name "$1") failed (continuing)"
}

# kill_shims: containerd shims of our nodes (they outlive containerd).
kill_shims() {
  local p cmdline
  for p in /proc/[0-9]*; do
    [[ "$(readlink "$p/exe" 2>/dev/null)" == */containerd-shim-runc-v2 ]] || continue
    cmdline=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) || continue
    [[ $cmdline == *"-address $NODES_DIR/"* ]] && kill -KILL "${p#/proc/}" 2>/dev/null
  done
  return 0
}

# unmount_all_under DIR: every mount point below DIR, deepest first.
unmount_all_under() {
  local m
  awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "down: cannot unmount $m"
  done
}

stop_real_nodes() {
  local n count
  count=$(real_node_count)
  if ((count > 0)); then
    mapfile -t kubelets < <(real_node_components kubelet)
    stop volume-reaper "${kubelets[@]}"
    for ((n = 1; n <= count; n++)); do remove_pods "$n"; done
    mapfile -t runtimes < <(real_node_components containerd)
    stop kube-proxy coredns "${runtimes[@]}"
    kill_shims
  fi
  [[ -d $NODES_DIR ]] && unmount_all_under "$NODES_DIR"
  undo_host_changes
}

# env_real_nodes: for `env`, while real nodes run (their count recorded and their netns there):
# the netns and the address on its link that pods (through the netns) and the host (over the
# veth) both reach, so a test server started there with `nsenter --net` serves both, without a
# firewall change (berth-testkit's S3Server::start_for_pods). Nothing without real nodes.
env_real_nodes() {
  (($(real_node_count) > 0)) && [[ -e $NETNS_PATH ]] || return 0
  printf 'export BERTH_TESTENV_NETNS=%q\n' "$NETNS_PATH"
  printf 'export BERTH_TESTENV_POD_NET_IP=%s\n' "$NS_LINK_IP"
}

# status_real_nodes: the real nodes' processes (nothing when none were started)
status_real_nodes() {
  local name pid rc=0
  (($(real_node_count) > 0)) || return 0
  echo "real nodes: $(real_node_count) in netns $NETNS ($NET.0.0/16, link $HOST_LINK $HOST_LINK_IP)"
  for name in $(real_node_components containerd) $(real_node_components kubelet) kube-proxy coredns volume-reaper; do
    if pid=$(pid_of "$name"); then
      printf '  %-24s running  pid %-7s log %s\n' "$name" "$pid" "$RUN/$name.log"
    else
      printf '  %-24s stopped\n' "$name"; rc=1
    fi
  done
  return $rc
}
