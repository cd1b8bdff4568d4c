#!/usr/bin/env bash
# One benchmark per call:
#   scripts/bench.sh deploy    deploy latency against a local cluster (tests/benches/deploy.rs)
#   scripts/bench.sh cluster   membership convergence and failure detection (tests/benches/cluster.rs)
#   scripts/bench.sh learner   training throughput, burn vs PyTorch on one core (learner/benches/throughput.rs)
#   scripts/bench.sh simulate  wall time of the 50-node MLP simulation, 200 epochs
#   scripts/bench.sh learner-cluster  10 learner replicas on a local cluster vs the simulator (tests/benches/learner.rs)
set -euo pipefail
cd "$(dirname "$0")/.."
bench="${1:?usage: scripts/bench.sh deploy|cluster|learner|simulate|learner-cluster}"
case "$bench" in
  learner)
    PYTORCH_PYTHON="$(bash scripts/pytorch-venv.sh | tail -n 1)"
    export PYTORCH_PYTHON
    cargo bench -p learner --bench throughput
    ;;
  simulate)
    cargo build --release -p cli
    time target/release/gossipctl simulate --model mlp --nodes 50 --methods delta-sum \
      --epochs 200 --out target/bench-simulate
    ;;
  *)
    cargo build --release --workspace --bins
    cargo bench -p e2e --bench "$bench"
    ;;
esac
