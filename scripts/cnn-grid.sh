#!/usr/bin/env bash
# The paper's CNN experiment, one cell (rule x size x seed) per run, kept across sittings:
#
#   scripts/cnn-grid.sh [SIZES] [METHODS] [SEEDS]
#   scripts/cnn-grid.sh 10,50 delta-sum-in-place,delta-sum,average 1     (the default)
#
# Under the paper's protocol into docs/reproduction/paper/cnn (or $GRID_OUT); see scripts/grid.sh.
# The earlier relay-protocol cells are in docs/reproduction/cnn-200-epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/grid.sh cnn "${1:-10,50}" "${2:-delta-sum-in-place,delta-sum,average}" "${3:-1}" \
  "${GRID_OUT:-docs/reproduction/paper/cnn}" --eval-samples 2000
