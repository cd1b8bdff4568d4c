#!/usr/bin/env bash
# Builds gossipctl, starts a local 3-agent cluster in .gossipctl/ and deploys examples/hello.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins
ctl=target/release/gossipctl
"$ctl" up --nodes 3 --dir .gossipctl
export GOSSIPCTL_CONFIG="$PWD/.gossipctl/config.yaml"
"$ctl" deploy examples/hello.yaml --wait
"$ctl" get workloads
echo
echo "Try:  export GOSSIPCTL_CONFIG=$GOSSIPCTL_CONFIG"
echo "      $ctl logs hello/greeter -f"
echo "      $ctl down --dir .gossipctl"
