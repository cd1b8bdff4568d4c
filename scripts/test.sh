#!/usr/bin/env bash
# Runs every test: unit, property and end-to-end. The README's test command, and what CI runs.
#
#   scripts/test.sh [ARGS...]     ARGS go to `cargo test --workspace --locked` (a filter, say)
#
# The end-to-end tests start real agents, processes and containers, so the machine needs a few
# Debian packages and a running Docker engine. As root with apt-get, this script installs the
# missing packages and starts the engine; otherwise it names what is missing and the command
# that installs it, and exits 1 without running anything. No test is skipped for a missing
# prerequisite: a run that passes here has exercised everything.
set -euo pipefail
cd "$(dirname "$0")/.."

# The one list of what the tests need: "package|how to tell it is there", checked in order.
#   coreutils, procps        process workloads (sleep, sh), the harness's process checks (ps)
#   nftables                 the partition test cuts agents apart with nft rules on loopback
#   file, busybox-static     scripts/images.sh copies a static busybox into the test images
#   docker.io, docker-compose  container workloads run on the machine's engine; the compose test
#   dataset-fashion-mnist    the full data set, for the learner examples and benchmarks
#   prometheus               the metrics test starts a real Prometheus server that scrapes agents
requirements=(
  "coreutils|command:sleep"
  "procps|command:ps"
  "nftables|command:nft"
  "file|command:file"
  "busybox-static|static:${BUSYBOX:-/bin/busybox}"
  "docker.io|command:docker"
  "docker-compose|command:docker-compose"
  "dataset-fashion-mnist|file:/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
  "prometheus|command:prometheus"
)

present() {
  local check="$1"
  case "$check" in
    command:*) command -v "${check#command:}" >/dev/null 2>&1 ;;
    file:*) [ -f "${check#file:}" ] ;;
    static:*) [ -x "${check#static:}" ] && command -v file >/dev/null 2>&1 \
      && file -L "${check#static:}" | grep -q 'statically linked' ;;
  esac
}

missing_packages() {
  local entry
  for entry in "${requirements[@]}"; do
    present "${entry#*|}" || printf '%s\n' "${entry%%|*}"
  done
}

is_root() { [ "$(id -u)" = 0 ]; }

mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -gt 0 ]; then
  if is_root && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing ${missing[*]} (Debian packages the tests use)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    mapfile -t missing < <(missing_packages)
  fi
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "test: the tests need these Debian packages, which are missing:" >&2
  for package in "${missing[@]}"; do
    echo "  $package" >&2
  done
  echo "install them as root with:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  echo "(or run this script as root on Debian, and it installs them)" >&2
  exit 1
fi

# The partition test changes nftables rules, which only root may do.
if ! is_root; then
  echo "test: the partition test sets nftables rules and needs root: run sudo scripts/test.sh" >&2
  exit 1
fi

# The container tests talk to the machine's Docker engine; start it if it is installed but down.
if ! docker info >/dev/null 2>&1; then
  echo "test: starting the Docker engine" >&2
  service docker start >/dev/null 2>&1 || (nohup dockerd >/tmp/dockerd.log 2>&1 &)
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! docker info >/dev/null 2>&1; then
    echo "test: the Docker engine did not start (see service docker status or /tmp/dockerd.log)" >&2
    exit 1
  fi
fi

echo "test: cargo test --workspace --locked $* (a cold build takes about 30 minutes on 2 cores)" >&2
exec cargo test --workspace --locked "$@"
