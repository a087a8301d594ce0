#!/usr/bin/env bash
# A second, real Docker engine in a network namespace of its own, reached over a unix socket: the
# topology of Docker Desktop, colima, Lima, OrbStack and remote engines, where the engine's bridges
# and their gateways are not addresses of the machine that runs claude-bottle. scripts/test.sh runs
# the Docker backend's and the CLI's integration tests against it as well as against the engine on
# this host. Linux, as root (CI is).
#
#   scripts/second-engine.sh up     set it up (idempotent); prints the `export` lines of `env`
#   scripts/second-engine.sh env    print `export` lines for the tests: DOCKER_HOST, and
#                                   CLAUDE_BOTTLE_TEST_ENGINE_HOST_ADDRESS, the address at which
#                                   that engine's containers reach this host
#   scripts/second-engine.sh down   stop it and remove the namespace, the veth, the host's rules and
#                                   the data root (idempotent)
#
# The namespace is wired like a VM with NAT: a veth pair on a /30, a default route through the
# host's end, and MASQUERADE plus FORWARD accepts on the host, so builds in that engine reach the
# package registries. Its own dockerd writes its iptables rules into the namespace, not the host's.
# It shares this host's filesystem, so bind mounts work as on Docker Desktop. Its bridges take
# addresses from a pool of their own, so a gateway there never happens to be an address of this
# host because the engine on this host has a network on the same subnet.
#
# Images it needs are copied from the engine on this host (DOCKER_HOST as the caller has it):
# the base image named by scripts/image-env.sh, with `docker save | docker load`.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

name=cb-engine2
netns=$name
socket=/var/run/docker-$name.sock
pidfile=/var/run/docker-$name.pid
data_root=/var/lib/docker-$name
exec_root=/var/run/docker-$name
log_file=/var/log/docker-$name.log
cgroup_parent=docker-$name
# A /30 for the link between this host and the namespace, and a pool for the engine's own
# networks: private ranges away from Docker's default pools (172.17-31.0.0/16, 192.168.0.0/16).
link_net=10.231.0.0/30
host_address=10.231.0.1
netns_address=10.231.0.2
bridge_ip=10.232.0.1/24
address_pool=base=10.233.0.0/16,size=24
host_veth=cbeng2h

log() { printf 'second-engine: %s\n' "$*" >&2; }
fail() {
  log "$*"
  exit 1
}
engine() { DOCKER_HOST=unix://$socket docker "$@"; }
answers() { engine info >/dev/null 2>&1; }
# Whether process $1 lives: a killed one may linger as a zombie until it is reaped.
alive() {
  local state
  state=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${state:0:1}" != Z ]
}
# Whether $1 is a live dockerd (a pid in a stale pid file may belong to another process by now).
live_dockerd() { alive "$1" && [ "$(ps -o comm= -p "$1")" = dockerd ]; }
dockerd_pid() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  live_dockerd "$pid" && echo "$pid"
}

print_env() {
  printf 'export DOCKER_HOST=%q CLAUDE_BOTTLE_TEST_ENGINE_HOST_ADDRESS=%q CLAUDE_BOTTLE_TEST_TOPOLOGY=second-engine\n' \
    "unix://$socket" "$host_address"
}

need_root() {
  [ "$(uname -s)" = Linux ] || fail "needs Linux (network namespaces); CI runs it"
  [ "$(id -u)" = 0 ] || fail "needs root: it creates a network namespace and starts dockerd (run it as root, as CI does)"
}

ensure_tools() {
  local missing=()
  command -v ip >/dev/null || missing+=(iproute2)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v nsenter >/dev/null || missing+=(util-linux)
  command -v dockerd >/dev/null || missing+=(docker.io)
  [ ${#missing[@]} -eq 0 ] && return
  command -v apt-get >/dev/null || fail "missing ${missing[*]}; install them and run again"
  log "installing ${missing[*]} with apt"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# `iptables -C` first, so that `up` run twice adds each rule once and `down` removes every copy.
host_rules=(
  "-t nat POSTROUTING -s $link_net ! -o $host_veth -j MASQUERADE"
  "-t filter FORWARD -i $host_veth -j ACCEPT"
  "-t filter FORWARD -o $host_veth -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
)
add_rule() {
  local table chain rest
  read -r _ table chain rest <<<"$1"
  # shellcheck disable=SC2086 # the rule is a list of words
  iptables -t "$table" -C "$chain" $rest 2>/dev/null || iptables -t "$table" -I "$chain" 1 $rest
}
delete_rule() {
  local table chain rest
  read -r _ table chain rest <<<"$1"
  # shellcheck disable=SC2086
  while iptables -t "$table" -C "$chain" $rest 2>/dev/null; do iptables -t "$table" -D "$chain" $rest; done
}

setup_network() {
  [ -e "/var/run/netns/$netns" ] || ip netns add "$netns"
  ip -n "$netns" link set lo up
  if ! ip link show "$host_veth" >/dev/null 2>&1; then
    ip link add "$host_veth" type veth peer name eth0 netns "$netns"
  fi
  ip addr replace "$host_address/30" dev "$host_veth"
  ip link set "$host_veth" up
  ip -n "$netns" addr replace "$netns_address/30" dev eth0
  ip -n "$netns" link set eth0 up
  ip -n "$netns" route replace default via "$host_address"
  # The engine on this host turns forwarding on already; without it the namespace has no way out.
  [ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ] || sysctl -qw net.ipv4.ip_forward=1
  for rule in "${host_rules[@]}"; do add_rule "$rule"; done
}

# Nameservers for the engine's containers. The host's /etc/resolv.conf is what dockerd hands them;
# when its servers are on loopback (systemd-resolved's 127.0.0.53), they are not in the namespace,
# so name the upstream servers instead.
dns_flags=()
choose_dns() {
  local servers
  servers=$(awk '/^nameserver/{print $2}' /etc/resolv.conf)
  if grep -qvE '^(127\.|::1$)' <<<"$servers"; then
    return
  fi
  servers=$(awk '/^nameserver/{print $2}' /run/systemd/resolve/resolv.conf 2>/dev/null | grep -vE '^(127\.|::1$)' || true)
  [ -n "$servers" ] || fail "the host's nameservers are on loopback and no upstream ones are known; they would not answer inside the namespace"
  for server in $servers; do dns_flags+=(--dns "$server"); done
}

start_dockerd() {
  if dockerd_pid >/dev/null && answers; then
    return
  fi
  local pid
  if pid=$(dockerd_pid); then
    log "dockerd ($pid) runs but does not answer yet"
  else
    # An engine that was killed rather than stopped leaves pid files that make a new one refuse to start.
    for stale in "$pidfile" "$exec_root/containerd/containerd.pid"; do
      [ -f "$stale" ] && {
        log "removing stale $stale"
        rm -f "$stale"
      }
    done
    rm -f "$socket"
    choose_dns
    log "starting dockerd in network namespace $netns (log: $log_file)"
    # nsenter, not `ip netns exec`: that one also remounts /sys for the namespace, and dockerd then
    # fails with "Devices cgroup isn't mounted". A containerd namespace and a cgroup parent of its
    # own (cgroupfs, so that the parent is a plain path on every host) keep its containers apart
    # from those of the engine on this host. `host-gateway` (as in
    # --add-host host.docker.internal:host-gateway) names this host, as on Docker Desktop.
    setsid nsenter --net="/var/run/netns/$netns" dockerd \
      --data-root "$data_root" --exec-root "$exec_root" --pidfile "$pidfile" -H "unix://$socket" \
      --bip "$bridge_ip" --default-address-pool "$address_pool" --host-gateway-ip "$host_address" \
      --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "$cgroup_parent" \
      --containerd-namespace "$name" --containerd-plugins-namespace "$name-plugins" \
      "${dns_flags[@]}" </dev/null >"$log_file" 2>&1 &
    pid=$!
  fi
  for _ in $(seq 1 60); do
    answers && return
    # Not live_dockerd: right after the fork it may not be dockerd yet.
    alive "$pid" || break
    sleep 1
  done
  tail -20 "$log_file" >&2 || true
  fail "dockerd did not answer on $socket (within 60 s, or it exited); see $log_file"
}

# The base image the tests build on, copied once: an image whose id the second engine already has
# is not copied again.
load_images() {
  local images=() image want have
  eval "$("$here/image-env.sh")"
  for image in "$CLAUDE_BOTTLE_BASE_IMAGE"; do
    want=$(docker image inspect --format '{{.Id}}' "$image")
    have=$(engine image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    [ "$want" = "$have" ] || images+=("$image")
  done
  [ ${#images[@]} -eq 0 ] && return
  log "copying ${images[*]} into it"
  # One archive for all of them: layers they share are sent once.
  docker save "${images[@]}" | engine load -q >/dev/null
}

# Builds there fetch from the npm registry: make sure its containers resolve and reach it, the
# path those builds take (the engine's bridge, its NAT, the veth, this host's NAT), so that a
# broken link shows here rather than as a failed build deep in a test.
check_egress() {
  local registry host
  registry=$(npm config get registry 2>/dev/null || true)
  host=$(sed -E 's#^[a-z]+://([^/:]+).*#\1#' <<<"${registry:-https://registry.npmjs.org/}")
  engine run --rm --network bridge "$CLAUDE_BOTTLE_BASE_IMAGE" getent hosts "$host" >/dev/null ||
    fail "containers of the second engine cannot resolve $host; check this host's nameservers (/etc/resolv.conf) and $log_file"
}

up() {
  need_root
  # The images come from the engine on this host, even in a shell that already points at this one.
  [ "${DOCKER_HOST:-}" != "unix://$socket" ] || unset DOCKER_HOST
  ensure_tools
  "$here/docker-engine.sh"
  setup_network
  start_dockerd
  load_images
  check_egress
  log "up: $(engine version --format '{{.Server.Version}}') on unix://$socket; this host is $host_address from there"
  print_env
}

# Every process the engine started: those in its namespace (dockerd, containerd, shims) and those
# in its containers' cgroups. Nothing else runs in either.
engine_processes() {
  [ -e "/var/run/netns/$netns" ] && ip netns pids "$netns"
  cat /sys/fs/cgroup/{,*/}"$cgroup_parent"/*/cgroup.procs 2>/dev/null || true
}

down() {
  need_root
  local pid
  if pid=$(dockerd_pid); then
    # Every container there is the tests'; removing them first spares dockerd's 10 s stop timeout.
    engine ps --all --quiet | xargs -r env DOCKER_HOST="unix://$socket" docker rm --force >/dev/null 2>&1 || true
    log "stopping dockerd ($pid)"
    kill -TERM "$pid"
    for _ in $(seq 1 30); do
      alive "$pid" || break
      sleep 1
    done
  fi
  local leftovers
  leftovers=$(engine_processes | sort -u | tr '\n' ' ')
  if [ -n "${leftovers// /}" ]; then
    log "killing what it left running: $leftovers"
    # shellcheck disable=SC2086 # a list of pids
    kill -KILL $leftovers 2>/dev/null || true
    sleep 1
  fi
  # Mounts it left behind (an engine that was killed leaves overlay and namespace mounts), deepest
  # first, before removing the folders that hold them.
  # findmnt names them by real path (/var/run is a link to /run).
  local roots
  roots="$(readlink -f "$data_root")|$(readlink -f "$exec_root")"
  findmnt -rn -o TARGET | { grep -E "^($roots)(/|$)" || true; } | sort -r | while read -r mount; do
    umount -l "$mount" || true
  done
  rmdir /sys/fs/cgroup/{,*/}"$cgroup_parent"/* /sys/fs/cgroup/{,*/}"$cgroup_parent" 2>/dev/null || true
  [ -e "/var/run/netns/$netns" ] && ip netns delete "$netns"
  ip link show "$host_veth" >/dev/null 2>&1 && ip link delete "$host_veth"
  for rule in "${host_rules[@]}"; do delete_rule "$rule"; done
  rm -rf --one-file-system "$data_root" "$exec_root"
  rm -f "$pidfile" "$socket"
  log "down"
}

case "${1:-}" in
up) up ;;
down) down ;;
env) print_env ;;
*)
  echo "usage: scripts/second-engine.sh up|down|env" >&2
  exit 2
  ;;
esac
