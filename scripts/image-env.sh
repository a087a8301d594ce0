#!/usr/bin/env bash
# Print `export` lines naming the base and registry images, for `eval "$(scripts/image-env.sh)"`.
# Uses the public defaults (node:24-bookworm-slim, registry:2) when the engine has or can pull them;
# otherwise (no Docker Hub, as on this project's CI machine) builds local stand-ins with
# scripts/local-images.sh and names those. Values already set in the environment win.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usable() { docker image inspect "$1" >/dev/null 2>&1 || docker pull -q "$1" >/dev/null 2>&1; }

base=${CLAUDE_BOTTLE_BASE_IMAGE:-}
registry=${CLAUDE_BOTTLE_REGISTRY_IMAGE:-}
if [ -z "$base" ] || [ -z "$registry" ]; then
  if usable node:24-bookworm-slim && usable registry:2; then
    base=${base:-node:24-bookworm-slim}
    registry=${registry:-registry:2}
  else
    echo "image-env: Docker Hub is out of reach; using local stand-ins" >&2
    "$here/local-images.sh"
    base=${base:-local/node:24-bookworm-slim}
    registry=${registry:-local/registry:2}
  fi
fi
printf 'export CLAUDE_BOTTLE_BASE_IMAGE=%q CLAUDE_BOTTLE_REGISTRY_IMAGE=%q\n' "$base" "$registry"
