#!/usr/bin/env bash
# The test command. On a fresh machine it sets up everything the tests need, then runs every
# package's unit and integration tests (integration tests talk to a real Docker engine and fail,
# never skip, without one):
#   Node >= 22 and pnpm (scripts/bootstrap.sh), dependencies, a Docker engine
#   (scripts/docker-engine.sh), tmux, gnome-keyring and secret-tool, and the base image
#   (scripts/image-env.sh).
# Extra arguments go to turbo, e.g. `scripts/test.sh --filter @claude-bottle/core`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Where the engine under test lives, one pass each. The first pass covers every package against
# the engine on this host; each further one runs some packages' tests again:
#   local          the engine on this host, sharing its network stack (Docker on Linux); every
#                  package but the Podman backend, whose tests run in the podman pass
#   second-engine  a second dockerd in a network namespace of its own, reached over a unix socket:
#                  how the engine sits on Docker Desktop, colima and remote hosts
#                  (scripts/second-engine.sh; Linux, as root, as in CI). The Docker backend's and
#                  the CLI's integration tests.
#   podman         rootless Podman, as a non-root user made for it (scripts/podman-user.sh; Linux,
#                  as root, as in CI). The Podman backend's tests, as that user.
# CLAUDE_BOTTLE_TEST_TOPOLOGIES names the passes to run, e.g. `local` for the first pass only, or
# `podman` for the Podman pass only. Extra arguments go to the first pass's turbo only.
known_topologies="local second-engine podman"
topologies=${CLAUDE_BOTTLE_TEST_TOPOLOGIES:-$known_topologies}
for topology in $topologies; do
  case " $known_topologies " in
  *" $topology "*) ;;
  *)
    echo "test: unknown topology '$topology' in CLAUDE_BOTTLE_TEST_TOPOLOGIES; known: $known_topologies" >&2
    exit 2
    ;;
  esac
done
podman_package=@claude-bottle/backend-podman
has_podman_package=
if grep -qs "\"name\": \"$podman_package\"" packages/*/package.json; then has_podman_package=1; fi

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
echo "test: base image $CLAUDE_BOTTLE_BASE_IMAGE" >&2

report_dir=$(mktemp -d)
second_engine=
podman_user=
podman_report_dir=
cleanup() {
  if [ -n "$second_engine" ]; then scripts/second-engine.sh down || true; fi
  if [ -n "$podman_user" ]; then scripts/podman-user.sh down || true; fi
  rm -rf "$report_dir" "$podman_report_dir"
}
trap cleanup EXIT
export CLAUDE_BOTTLE_TEST_REPORT_DIR=$report_dir
status=0
case " $topologies " in
*" local "*)
  # The Podman backend's tests are rootless Podman's: as root they would test another thing.
  local_filter=()
  [ -z "$has_podman_package" ] || local_filter=("--filter=!$podman_package")
  CLAUDE_BOTTLE_TEST_TOPOLOGY=local pnpm exec turbo run test --concurrency=1 --continue --output-logs=full \
    "${local_filter[@]}" "$@" || status=$?
  ;;
esac

# The engine-facing packages again, with the engine elsewhere. Their reports are named after the
# topology (vitest.shared.ts), so the summary counts them beside the first run's.
for topology in $topologies; do
  case $topology in
  local) ;;
  second-engine)
    if [ "$(id -u)" != 0 ] || [ "$(uname -s)" != Linux ]; then
      echo "test: the second-engine topology needs root on Linux (CI runs it); not run here" >&2
      [ "${CI:-}" = true ] && status=1
      continue
    fi
    second_engine=up
    echo "test: the Docker backend's and the CLI's integration tests against a second engine" >&2
    if engine_env=$(scripts/second-engine.sh up); then
      (
        eval "$engine_env"
        # Not the CLI's smolmachines tests nor its benchmark smoke test (which measures smolmachines
        # too): they are the smolmachines backend's question, not the Docker backend's topology
        # question. (They used to need a registry container's port published on this host's
        # loopback; since claude-bottle serves the image to smolvm itself they no longer do, but
        # they have not been run against a second engine yet.) Nor the CLI's --publish test: the
        # published port is on the engine namespace's loopback, out of this host's reach.
        pnpm exec turbo run test --concurrency=1 --continue --output-logs=full \
          --filter=@claude-bottle/backend-docker --filter=claude-bottle -- --project integration \
          --exclude '**/smolmachines.integration.test.ts' --exclude '**/bench-smoke.integration.test.ts' \
          --exclude '**/publish.integration.test.ts'
      ) || status=$?
    else
      echo "test: could not set up the second engine" >&2
      status=1
    fi
    ;;
  podman)
    if [ "$(id -u)" != 0 ] || [ "$(uname -s)" != Linux ]; then
      echo "test: the podman topology needs root on Linux to make its non-root user (CI runs it); not run here" >&2
      [ "${CI:-}" = true ] && status=1
      continue
    fi
    if [ -z "$has_podman_package" ]; then
      echo "test: the podman topology tests $podman_package, and no package has that name" >&2
      [ "${CI:-}" = true ] && status=1
      continue
    fi
    podman_user=up
    echo "test: the Podman backend's tests, as a non-root user with rootless Podman" >&2
    if podman_env=$(scripts/podman-user.sh up); then
      # The user reads this checkout and writes nothing in it (scripts/podman-user.sh), so root
      # builds first and the user's turbo runs the tests only (--only). Its reports go to a folder
      # of its own, collected after. vite's "runner" config loader compiles vitest's config in
      # memory instead of writing a temporary file beside it.
      podman_report_dir=$(mktemp -d)
      chown "$(scripts/podman-user.sh user):" "$podman_report_dir"
      (
        eval "$podman_env"
        pnpm exec turbo run build --output-logs=errors-only --filter="$podman_package" --filter=claude-bottle || exit
        CLAUDE_BOTTLE_TEST_REPORT_DIR=$podman_report_dir scripts/podman-user.sh run -- \
          pnpm exec turbo run test --only --concurrency=1 --continue --output-logs=full \
          --filter="$podman_package" -- --configLoader runner
      ) || status=$?
      cp "$podman_report_dir"/*.json "$report_dir"/ 2>/dev/null || true
    else
      echo "test: could not set up the Podman user" >&2
      status=1
    fi
    ;;
  esac
done

node scripts/test-summary.mjs "$report_dir" || status=$((status == 0 ? 1 : status))
exit "$status"
