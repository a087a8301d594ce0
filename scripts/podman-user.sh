#!/usr/bin/env bash
# A non-root user with a real rootless Podman, for the Podman backend's tests: that backend runs as
# the invoking user with no daemon and no root, so its tests must not run as root (CI does). Linux;
# `up` and `down` as root, as CI runs; `run` as root too (it switches to the user).
#
#   scripts/podman-user.sh up          set up (idempotent): packages, the user, its subordinate ids,
#                                      runtime dir, Podman config and images; prints the `export`
#                                      lines a test pass needs (as scripts/second-engine.sh does)
#   scripts/podman-user.sh run -- CMD  run CMD as the user in this checkout, with a login-like env
#   scripts/podman-user.sh down        restore /dev/net/tun's mode and remove what the tests left
#                                      running (idempotent)
#   scripts/podman-user.sh user        print the user's name
#
# What `up` sets up:
#   - Debian's podman and what it needs (see `packages` below), each only when missing. Podman's
#     default runtime is left as it is: crun, which fails on this machine's cgroup v1; choosing
#     runc there is the backend's job (users hit that too), not this script's.
#   - The user cb-podman-test (uid chosen by useradd), home /home/cb-podman-test, with 65536
#     subordinate uids and gids that overlap no range already in /etc/subuid or /etc/subgid.
#   - XDG_RUNTIME_DIR=/run/user/UID, mode 0700 (there is no logind here to make it).
#   - ~/.config/containers/storage.conf: the native "overlay" driver (rootless overlay works on
#     kernels >= 5.13; the default Podman picks here is vfs, which copies the image per container).
#     Storage made earlier with another driver is reset. containers.conf: cgroupfs and a file event
#     log, because no systemd user session runs here (with one, Podman's defaults are right).
#   - /dev/net/tun made mode 0666 (its mode is kept in /run/cb-podman-test.tun-mode and restored by
#     `down`): it is 0600 on this CI machine only (distributions ship 0666), and without it
#     slirp4netns, rootless Podman's network, cannot open it.
#   - The base image (scripts/image-env.sh), copied from the Docker engine into the
#     user's storage with `docker save | podman load`; one whose id is there already is not copied.
#     Podman stores local/node:24-bookworm-slim as localhost/local/node:24-bookworm-slim and finds
#     it by the name Docker uses, so `FROM local/node:24-bookworm-slim` in a `podman build` works.
#
# The checkout stays root's, and nothing in it is made writable for the user (no chmod, no ACLs,
# no chown of build folders): a test run that could rewrite the checkout's dist/ or node_modules as
# another user would leave it in a state root did not build. `up` lets the user through folders
# above the checkout that are closed to others (see open_path_to_repo; `down` closes them again),
# and `run` checks that the user can read it and says what to do if not. Whatever writes there
# must be done by root before `run`, or pointed elsewhere:
#   - builds and installs: root's. scripts/test.sh builds, then runs turbo with --only as the user;
#     pnpm is told to fail ("run pnpm install") rather than install when node_modules is stale.
#   - turbo's task logs (PACKAGE/.turbo) are written for cached tasks only, and tests are not
#     cached; its cache, should it need one, is ~/.cache/claude-bottle/turbo.
#   - vitest's config is compiled in memory with `--configLoader runner` (vite's default loader
#     writes a temporary file beside the config or in node_modules/.vite-temp).
#   - reports go where CLAUDE_BOTTLE_TEST_REPORT_DIR says, a folder the user must own
#     (scripts/test.sh makes one and collects the reports from it); temporary files go to /tmp.
#
# `run` starts CMD from an empty environment, as a login would: HOME, USER, LOGNAME, SHELL,
# LANG=C.UTF-8, XDG_RUNTIME_DIR, XDG_CACHE_HOME, and PATH with Node and pnpm as scripts/bootstrap.sh
# provides them ahead of the system's. From the caller it passes on only CI, TERM,
# NODE_EXTRA_CA_CERTS, SSL_CERT_FILE and CLAUDE_BOTTLE_*, ANTHROPIC_*, TURBO_* variables. The user
# is never given the Docker socket, DOCKER_HOST or the docker group (that would be root by another
# name); its tests see Podman only.
#
# `down` leaves the user, its config and its image storage in place, so that the next `up` need not
# copy the images again (that is most of its time); it removes every container and pod the tests
# left, and ends the user's remaining processes (Podman's rootless pause process among them).
# `userdel -r cb-podman-test` removes everything.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

user=cb-podman-test
subid_count=65536
tun=/dev/net/tun
tun_state=/run/$user.tun-mode
# Folders above the checkout that `up` let the user through (mode before, path), for `down`.
opened_state=/run/$user.opened-dirs

log() { printf 'podman-user: %s\n' "$*" >&2; }
fail() {
  log "$*"
  exit 1
}

need_root() {
  [ "$(uname -s)" = Linux ] || fail "needs Linux (rootless Podman); CI runs it"
  [ "$(id -u)" = 0 ] || fail "needs root: it creates a user and switches to it (run it as root, as CI does)"
}

uid() { id -u "$user"; }
home() { getent passwd "$user" | cut -d: -f6; }
runtime_dir() { echo "/run/user/$(uid)"; }

# A command as the user, with the environment Podman needs and nothing of root's.
as_user() {
  local home
  home=$(home)
  (cd / && runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" SHELL=/bin/bash \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    XDG_RUNTIME_DIR="$(runtime_dir)" "$@")
}

# Debian's packages: what Podman needs without its Recommends, named so that CI gets the same set
# as a user's default install on this kind of machine.
#   crun, runc    Debian's podman installs crun (its first choice) and runs it by default; on cgroup
#                 v1 hosts like this one crun fails ("cgroups in hybrid mode not supported") and runc
#                 works. Both are here so that CI meets that failure as users do (where Docker came
#                 first, apt would pick its runc and skip crun), and the backend's answer to it is
#                 tested: choosing the runtime is the backend's job, not this script's.
#   catatonit     what `podman run --init` runs (Debian's podman looks for it, not for tini)
#   netavark, aardvark-dns
#                 the network stack for `podman network create` (without them Debian falls back to
#                 CNI, another stack than on users' machines)
packages=(podman crun runc uidmap slirp4netns fuse-overlayfs catatonit netavark aardvark-dns)
ensure_packages() {
  if ! command -v dpkg-query >/dev/null; then
    command -v podman >/dev/null || fail "podman is missing; install it (with uidmap and slirp4netns) and run again"
    return
  fi
  local missing=() package
  for package in "${packages[@]}"; do
    [ "$(dpkg-query -W -f '${Status}' "$package" 2>/dev/null)" = "install ok installed" ] || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return
  command -v apt-get >/dev/null || fail "missing ${missing[*]}; install them and run again"
  log "installing ${missing[*]} with apt"
  local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}")
  "${install[@]}" >&2 || { apt-get update -qq >&2 && "${install[@]}" >&2; }
}

# The first id past every range in /etc/subuid and /etc/subgid (and not below login.defs' usual
# 100000), so the new range overlaps none of them.
free_subid_start() {
  awk -F: 'NF >= 3 && $3 > 0 { end = $2 + $3; if (end > max) max = end } END { print (max > 100000 ? max : 100000) }' \
    /etc/subuid /etc/subgid 2>/dev/null
}

ensure_user() {
  if ! id "$user" >/dev/null 2>&1; then
    log "creating user $user"
    useradd --create-home --user-group --shell /bin/bash "$user"
  fi
  touch /etc/subuid /etc/subgid
  # useradd gives a new user subordinate ids itself on most systems; give them only when it did not.
  if ! grep -q "^$user:" /etc/subuid || ! grep -q "^$user:" /etc/subgid; then
    local start end
    start=$(free_subid_start)
    end=$((start + subid_count - 1))
    log "giving $user subordinate ids $start-$end"
    grep -q "^$user:" /etc/subuid || usermod --add-subuids "$start-$end" "$user"
    grep -q "^$user:" /etc/subgid || usermod --add-subgids "$start-$end" "$user"
  fi
  local dir
  dir=$(runtime_dir)
  mkdir -p "$dir"
  chown "$user:" "$dir"
  chmod 0700 "$dir"
}

ensure_tun() {
  [ -c "$tun" ] || fail "$tun is missing; rootless Podman's network (slirp4netns) needs it (modprobe tun)"
  # Kept once: a second `up` would otherwise record the mode the first one set.
  [ -f "$tun_state" ] || stat -c %a "$tun" >"$tun_state"
  chmod 0666 "$tun"
}

# A file of the user's with this content, rewritten only when it differs.
user_file() {
  local path=$1 content=$2
  if [ "$(cat "$path" 2>/dev/null)" != "$content" ]; then
    install -d -o "$user" -g "$user" -m 0700 "$(dirname "$path")"
    printf '%s\n' "$content" | install -o "$user" -g "$user" -m 0644 /dev/stdin "$path"
  fi
}

ensure_podman_config() {
  local config
  config="$(home)/.config/containers"
  user_file "$config/storage.conf" '# Written by claude-bottle scripts/podman-user.sh.
[storage]
driver = "overlay"'
  user_file "$config/containers.conf" '# Written by claude-bottle scripts/podman-user.sh: no systemd user session runs here.
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"'
  local driver
  driver=$(as_user podman info --format '{{.Store.GraphDriverName}}' 2>/dev/null || true)
  if [ "$driver" != overlay ]; then
    log "resetting $user's Podman storage (driver '${driver:-unknown}', want overlay)"
    as_user podman system reset --force >/dev/null 2>&1 || true
    driver=$(as_user podman info --format '{{.Store.GraphDriverName}}') ||
      fail "podman does not start as $user; see the error above"
    [ "$driver" = overlay ] || fail "$user's Podman uses storage driver '$driver', not overlay"
  fi
}

# Images as the tests name them (scripts/image-env.sh, from the Docker engine).
load_images() {
  local images=() image want have
  eval "$("$here/image-env.sh")"
  for image in "$CLAUDE_BOTTLE_BASE_IMAGE"; do
    want=$(docker image inspect --format '{{.Id}}' "$image")
    have=$(as_user podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    [ "${want#sha256:}" = "${have#sha256:}" ] || images+=("$image")
  done
  [ ${#images[@]} -eq 0 ] && return
  log "copying ${images[*]} into $user's Podman storage"
  docker save "${images[@]}" | as_user podman load -q >/dev/null
}

# Builds by the backend fetch from the npm registry through rootless networking (slirp4netns):
# make sure the user's containers resolve it, so a broken set-up shows here rather than deep in a
# test. runc, named, because crun fails on this machine (the backend makes that choice itself).
check_podman() {
  local registry host
  registry=$(npm config get registry 2>/dev/null || true)
  host=$(sed -E 's#^[a-z]+://([^/:]+).*#\1#' <<<"${registry:-https://registry.npmjs.org/}")
  as_user podman --runtime runc run --rm "$CLAUDE_BOTTLE_BASE_IMAGE" getent hosts "$host" >/dev/null ||
    fail "$user's containers cannot resolve $host; check $tun, slirp4netns and /etc/resolv.conf"
}

print_env() {
  eval "$("$here/image-env.sh")"
  printf 'export CLAUDE_BOTTLE_TEST_TOPOLOGY=podman CLAUDE_BOTTLE_BASE_IMAGE=%q\n' "$CLAUDE_BOTTLE_BASE_IMAGE"
}

up() {
  need_root
  ensure_packages
  "$here/docker-engine.sh"
  ensure_user
  ensure_tun
  open_path_to_repo
  ensure_podman_config
  load_images
  check_podman
  log "up: $(as_user podman version --format '{{.Client.Version}}') as $user (uid $(uid)), storage overlay, runtime dir $(runtime_dir)"
  print_env
}

# The user's processes, by id: every one of them is the tests' (the user is this script's own).
user_pids() { ps -o pid= -u "$(uid)" 2>/dev/null | tr -d ' ' || true; }

down() {
  need_root
  if id "$user" >/dev/null 2>&1; then
    if [ -d "$(runtime_dir)" ]; then
      as_user podman pod rm --all --force >/dev/null 2>&1 || true
      as_user podman rm --all --force --time 0 >/dev/null 2>&1 || true
    fi
    local pids
    pids=$(user_pids | tr '\n' ' ')
    if [ -n "${pids// /}" ]; then
      log "ending what $user left running: $pids"
      # shellcheck disable=SC2086 # a list of pids
      kill -TERM $pids 2>/dev/null || true
      sleep 1
      pids=$(user_pids | tr '\n' ' ')
      # shellcheck disable=SC2086
      [ -z "${pids// /}" ] || kill -KILL $pids 2>/dev/null || true
    fi
  fi
  if [ -f "$tun_state" ]; then
    chmod "$(cat "$tun_state")" "$tun"
    rm -f "$tun_state"
  fi
  restore_opened_dirs
  log "down"
}

# The folders above the checkout must let the user through. A checkout in a private temporary
# folder (mktemp -d makes it 0700, as a CI runner may) is a fact of where it was cloned, not of the
# project: `up` adds o+x (pass through, not list) to each such folder above the checkout, records
# its mode, and `down` puts it back. Nothing inside the checkout is changed.
open_path_to_repo() {
  local dir="" part
  local IFS=/
  for part in ${repo#/}; do
    dir="$dir/$part"
    [ "$dir" = "$repo" ] && break
    if ! runuser -u "$user" -- test -x "$dir"; then
      printf '%s %s\n' "$(stat -c %a "$dir")" "$dir" >>"$opened_state"
      chmod o+x "$dir"
      log "let $user through $dir (o+x until down)"
    fi
  done
  unset IFS
}

restore_opened_dirs() {
  [ -f "$opened_state" ] || return 0
  local mode dir
  while read -r mode dir; do
    [ -d "$dir" ] && chmod "$mode" "$dir"
  done <"$opened_state"
  rm -f "$opened_state"
}

# The user must be able to read the checkout: every folder down to it must let others through.
# Checked from / down, so the message names the first folder that does not.
check_repo_readable() {
  local dir="" part
  local IFS=/
  for part in ${repo#/}; do
    dir="$dir/$part"
    runuser -u "$user" -- test -x "$dir" ||
      fail "$user cannot enter $dir, so it cannot read the checkout $repo; clone it where other users can read (e.g. under /tmp or /work), or run chmod o+x $dir"
  done
  unset IFS
  runuser -u "$user" -- test -r "$repo/package.json" -a -x "$repo/node_modules/.bin" ||
    fail "$user cannot read $repo/package.json or $repo/node_modules; run pnpm install as root first, with umask 022"
}

run() {
  need_root
  [ "${1:-}" = -- ] && shift
  [ $# -gt 0 ] || usage
  id "$user" >/dev/null 2>&1 && [ -d "$(runtime_dir)" ] || fail "run 'scripts/podman-user.sh up' first"
  check_repo_readable
  # Node and pnpm as scripts/bootstrap.sh provides them (it installs into this checkout's .tools).
  # shellcheck source=bootstrap.sh
  source "$here/bootstrap.sh"
  local node_dir pnpm_dir home cache
  node_dir=$(dirname "$(command -v node)")
  pnpm_dir=$(dirname "$(command -v pnpm)")
  home=$(home)
  cache=$home/.cache/claude-bottle
  runuser -u "$user" -- mkdir -p "$cache/turbo"
  # What a test pass needs from the caller: the images, the report folder and topology, CI, and the
  # host's extra CA certificates (image builds carry them into the image, as they do for any user
  # behind a TLS-inspecting proxy).
  local pass=()
  local name
  while IFS= read -r name; do
    case $name in
    CI | TERM | NODE_EXTRA_CA_CERTS | SSL_CERT_FILE | CLAUDE_BOTTLE_* | ANTHROPIC_* | TURBO_*) pass+=("$name=${!name}") ;;
    esac
  done < <(compgen -e)
  cd "$repo"
  exec runuser -u "$user" -- env -i HOME="$home" USER="$user" LOGNAME="$user" SHELL=/bin/bash LANG=C.UTF-8 \
    PATH="$node_dir:$pnpm_dir:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    XDG_RUNTIME_DIR="$(runtime_dir)" XDG_CACHE_HOME="$home/.cache" \
    TURBO_CACHE_DIR="$cache/turbo" pnpm_config_verify_deps_before_run=error pnpm_config_update_notifier=false \
    "${pass[@]}" "$@"
}

usage() {
  echo "usage: scripts/podman-user.sh up|down|user|run -- COMMAND..." >&2
  exit 2
}

case "${1:-}" in
up) up ;;
down) down ;;
user) echo "$user" ;;
run)
  shift
  run "$@"
  ;;
*) usage ;;
esac
