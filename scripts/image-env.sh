#!/usr/bin/env bash
# Print the `export` line naming the base image, for `eval "$(scripts/image-env.sh)"`.
# Uses the public default (node:24-bookworm-slim) when the engine has or can pull it; otherwise (no
# Docker Hub, as on this project's CI machine) builds a local stand-in with scripts/local-images.sh
# and names that. A value already set in the environment wins.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usable() { docker image inspect "$1" >/dev/null 2>&1 || docker pull -q "$1" >/dev/null 2>&1; }

base=${CLAUDE_BOTTLE_BASE_IMAGE:-}
if [ -z "$base" ]; then
  if usable node:24-bookworm-slim; then
    base=node:24-bookworm-slim
  else
    echo "image-env: Docker Hub is out of reach; using local stand-ins" >&2
    "$here/local-images.sh"
    base=local/node:24-bookworm-slim
  fi
fi
printf 'export CLAUDE_BOTTLE_BASE_IMAGE=%q\n' "$base"
