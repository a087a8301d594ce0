#!/usr/bin/env bash
# Make sure a Docker engine answers. Reuses one that already does; otherwise, on a Debian-family
# host where we are root (this project's CI machine), installs docker.io and starts dockerd
# without systemd. Anywhere else it says what to do and fails.
set -euo pipefail

log() { printf 'docker-engine: %s\n' "$*" >&2; }

if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ -n "${DOCKER_HOST:-}" ]; then
  log "DOCKER_HOST=$DOCKER_HOST does not answer; start that engine and run again"
  exit 1
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  log "no Docker engine answers; start Docker (Docker Desktop, colima, or 'sudo systemctl start docker') and run again"
  exit 1
fi
if ! command -v dockerd >/dev/null || ! command -v iptables >/dev/null; then
  log "installing docker.io and iptables with apt"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io iptables >&2
fi
# An engine that was killed rather than stopped leaves pid files that make a new dockerd refuse to start.
for pidfile in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
  if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    log "removing stale $pidfile"
    rm -f "$pidfile"
  fi
done
log "starting dockerd (log: /var/log/dockerd.log)"
nohup dockerd >/var/log/dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    log "engine is up"
    exit 0
  fi
  sleep 1
done
log "dockerd did not answer within 60 s; see /var/log/dockerd.log"
exit 1
