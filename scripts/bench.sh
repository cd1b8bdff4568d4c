#!/usr/bin/env bash
# One benchmark per call:
#   scripts/bench.sh deploy    deploy latency against a local cluster (tests/benches/deploy.rs)
#   scripts/bench.sh cluster   membership convergence and failure detection (tests/benches/cluster.rs);
#                              `scripts/bench.sh cluster 50 signing`: steady gossip bytes and agent
#                              CPU at 50 agents, signed against unsigned in the same run
#   scripts/bench.sh learner   training throughput, burn vs PyTorch on one core (learner/benches/throughput.rs)
#   scripts/bench.sh simulate  wall time of the 50-node MLP simulation, 200 epochs: the paper's
#                              protocol against the relay protocol in the same run, as a ratio
#   scripts/bench.sh learner-cluster  10 learner replicas on a local cluster vs the simulator (tests/benches/learner.rs)
#   scripts/bench.sh burst     10 process components x 50 replicas deployed at once on 10, then 50
#                              real agents on this machine (tests/benches/burst.rs)
#   scripts/bench.sh probes    the agent CPU that readiness probes (tcp, http, exec; every second)
#                              of 100 process replicas cost, against none (tests/benches/probes.rs)
#   scripts/bench.sh rollout   a 10-replica rolling update on 5 real agents: one at a time, 25% and
#                              all at once, in the same run (tests/benches/rollout.rs)
#   scripts/bench.sh forward   the service forwarder against a direct connection to the same
#                              replica: small-request latency and a 100 MB transfer (tests/benches/forward.rs)
#   scripts/bench.sh scale     the deterministic cluster simulation: a burst and a crash wave on
#                              200 agents, rumours vs push-to-all in the same run, then 1,000
#                              agents with 10,000 replicas (SIM_NODES sets the first size)
set -euo pipefail
cd "$(dirname "$0")/.."
bench="${1:?usage: scripts/bench.sh deploy|cluster|learner|simulate|learner-cluster|burst|probes|rollout|forward|scale}"
case "$bench" in
  learner)
    PYTORCH_PYTHON="$(bash scripts/pytorch-venv.sh | tail -n 1)"
    export PYTORCH_PYTHON
    cargo bench -p learner --bench throughput
    ;;
  simulate)
    cargo build --release --locked --bins
    # One cell each, alternating, so a drift in the machine's speed hits both alike.
    runs="${RUNS:-2}"
    declare -A total=([paper]=0 [relay]=0)
    for run in $(seq "$runs"); do
      for protocol in paper relay; do
        start=$(date +%s.%N)
        target/release/gossipctl simulate --model mlp --nodes 50 --methods delta-sum \
          --epochs 200 --protocol "$protocol" --topology random \
          --out "target/bench-simulate/$protocol" >/dev/null
        seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
        total[$protocol]=$(awk -v a="${total[$protocol]}" -v b="$seconds" 'BEGIN { print a + b }')
        printf 'run %d: --protocol %-5s %6.1f s\n' "$run" "$protocol" "$seconds"
      done
    done
    awk -v p="${total[paper]}" -v r="${total[relay]}" -v n="$runs" -v c="$(nproc)" 'BEGIN {
      printf "mean: paper %.1f s, relay %.1f s; paper / relay = %.2f (%d cores)\n", p / n, r / n, p / r, c
    }'
    ;;
  scale)
    cargo test --release --locked -p agent --test cluster_simulation -- --ignored --nocapture \
      --test-threads 1 bench_per_update_work bench_rumours_against_push_to_all thousand
    ;;
  *)
    cargo build --release --workspace --bins
    shift
    cargo bench -p e2e --bench "$bench" -- "$@"
    ;;
esac
