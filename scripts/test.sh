#!/usr/bin/env bash
# The test command. On a fresh machine it sets up everything the tests need, then runs every
# package's unit and integration tests (integration tests talk to a real Docker engine and fail,
# never skip, without one):
#   Node >= 22 and pnpm (scripts/bootstrap.sh), dependencies, a Docker engine
#   (scripts/docker-engine.sh), tmux, gnome-keyring and secret-tool, and the base and registry images
#   (scripts/image-env.sh).
# Extra arguments go to turbo, e.g. `scripts/test.sh --filter @claude-bottle/core`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/bootstrap.sh
if [ "${CI:-}" = true ]; then pnpm install --frozen-lockfile; else pnpm install; fi
scripts/docker-engine.sh
# The interactive end-to-end tests drive claude-bottle in a real terminal through tmux; the login
# test stores a credential in a real Secret Service (gnome-keyring on a private D-Bus session).
missing=()
for tool in tmux:tmux dbus-run-session:dbus gnome-keyring-daemon:gnome-keyring secret-tool:libsecret-tools; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}")
    "${install[@]}" >&2 || { apt-get update -qq && "${install[@]}" >&2; }
  else
    echo "test: the tests need ${missing[*]}; install them (e.g. apt-get install ${missing[*]}) and run again" >&2
    exit 1
  fi
fi
eval "$(scripts/image-env.sh)"
echo "test: base image $CLAUDE_BOTTLE_BASE_IMAGE, registry image $CLAUDE_BOTTLE_REGISTRY_IMAGE" >&2

report_dir=$(mktemp -d)
trap 'rm -rf "$report_dir"' EXIT
export CLAUDE_BOTTLE_TEST_REPORT_DIR=$report_dir
status=0
pnpm exec turbo run test --concurrency=1 --continue --output-logs=full "$@" || status=$?
node scripts/test-summary.mjs "$report_dir" || status=$((status == 0 ? 1 : status))
exit "$status"
