#!/usr/bin/env bash
# The paper's protocol with the CNN (200 epochs, window 10, degree 4, seed 1), one cell
# (method x size) per `gossipctl simulate` run, so a long grid can be built up over several
# sittings: cells already in OUT/cells are kept, then every cell is summarised and plotted
# together into OUT.
#
#   scripts/cnn-grid.sh [SIZES] [METHODS]
#   scripts/cnn-grid.sh 10,25,50 delta-sum,average,variance-corrected   (the default)
#
# OUT is docs/reproduction/cnn-200-epochs unless $GRID_OUT says otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes="${1:-10,25,50}"
methods="${2:-delta-sum,average,variance-corrected}"
out="${GRID_OUT:-docs/reproduction/cnn-200-epochs}"

cargo build --release -p cli
gossipctl=target/release/gossipctl

for method in ${methods//,/ }; do
  for nodes in ${sizes//,/ }; do
    cell="$out/cells/$method-$nodes"
    if [ -f "$cell/metrics.csv" ]; then
      echo "kept $cell"
      continue
    fi
    # Write to a scratch folder first: an interrupted cell leaves no partial metrics behind.
    rm -rf "$cell.partial"
    "$gossipctl" simulate --model cnn --nodes "$nodes" --methods "$method" --epochs 200 \
      --window 10 --degree 4 --seed 1 --eval-samples 2000 --out "$cell.partial"
    rm -rf "$cell"
    mv "$cell.partial" "$cell"
  done
done

"$gossipctl" simulate --out "$out" --from-metrics "$(ls "$out"/cells/*[0-9]/metrics.csv | paste -sd,)"
