#!/usr/bin/env bash
# Builds gossipctl, starts a local 3-agent cluster in .gossipctl/ and deploys examples/hello.yaml.
# Needs only the Rust toolchain; the `process` workloads it deploys use sh and sleep.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "quickstart: cargo is missing; install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
ctl=target/release/gossipctl
if [ -x "$ctl" ] && [ -x target/release/gossipd ]; then
  echo "quickstart: bringing the release build up to date (seconds when nothing changed)" >&2
else
  echo "quickstart: first build of gossipctl and gossipd in release mode; it downloads the" >&2
  echo "quickstart: crates and compiles them, about 20 minutes on 2 cores (later runs: seconds)" >&2
fi
cargo build --release --locked --bins

echo "quickstart: starting 3 agents on loopback in .gossipctl/" >&2
"$ctl" up --nodes 3 --dir .gossipctl
export GOSSIPCTL_CONFIG="$PWD/.gossipctl/config.yaml"
echo "quickstart: deploying examples/hello.yaml and waiting for it to run" >&2
"$ctl" deploy examples/hello.yaml --wait
"$ctl" get workloads
echo
echo "Try:  export GOSSIPCTL_CONFIG=$GOSSIPCTL_CONFIG"
echo "      $ctl logs hello/greeter -f"
echo "      $ctl down --dir .gossipctl"
