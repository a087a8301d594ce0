#!/usr/bin/env bash
# The benchmarks in one command: set up like scripts/test.sh (Node and pnpm, dependencies, a build,
# a Docker engine, the base image), then run bench/run.mjs, which writes
# bench/results/latest.json and the results section of BENCHMARKS.md. Arguments go to bench/run.mjs:
#
#   scripts/bench.sh                 # a full run: about 10 minutes on 2 cores; run it on a quiet machine
#   scripts/bench.sh --smoke         # one or two samples of everything, written to a temporary folder
#   scripts/bench.sh --only egress   # one group: startup, docker, smolmachines, egress, rss, tui
#   scripts/bench.sh --tui-runs 9    # more rounds of the interactive TUI comparison (5 by default)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/bootstrap.sh
(
  if [ "${CI:-}" = true ]; then pnpm install --frozen-lockfile --reporter=silent; else pnpm install --reporter=silent; fi
  pnpm exec turbo run build --output-logs=errors-only
) >&2
docker info >/dev/null 2>&1 || scripts/docker-engine.sh
# The tui group starts Claude Code's TUI in a real terminal, a tmux pane. Elsewhere than on a
# Debian-family machine as root, that group says itself what to install.
if ! command -v tmux >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tmux)
  "${install[@]}" >&2 || { apt-get update -qq && "${install[@]}" >&2; }
fi
eval "$(scripts/image-env.sh)"
exec node bench/run.mjs "$@"
