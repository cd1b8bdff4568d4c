#!/usr/bin/env bash
# A grid of `gossipctl simulate` cells (rule x size x seed), one run per cell, so a long grid can
# be built up over several sittings: cells already in OUT/cells are kept, an interrupted cell
# leaves nothing behind, and at the end every cell is summarised and plotted together into OUT.
#
#   scripts/grid.sh MODEL SIZES METHODS SEEDS OUT [SIMULATE FLAGS...]
#   scripts/grid.sh mlp 10,25,50 delta-sum,average 1,2,3 docs/reproduction/paper/mlp --eval-samples 2000
#
# Every cell runs 200 epochs with window 10 under the flags given (default: the paper's protocol
# on Flocky's geometric topology, IID).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$#" -lt 5 ]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
model="$1" sizes="$2" methods="$3" seeds="$4" out="$5"
shift 5

if [ -n "${GOSSIPCTL:-}" ]; then
  gossipctl="$GOSSIPCTL"
else
  cargo build --release --locked --bins
  gossipctl=target/release/gossipctl
fi

for seed in ${seeds//,/ }; do
  for nodes in ${sizes//,/ }; do
    for method in ${methods//,/ }; do
      cell="$out/cells/$method-$nodes-s$seed"
      if [ -f "$cell/metrics.csv" ]; then
        echo "kept $cell"
        continue
      fi
      rm -rf "$cell.partial"
      echo "running $cell" >&2
      start=$(date +%s)
      "$gossipctl" simulate --model "$model" --nodes "$nodes" --methods "$method" \
        --seeds "$seed" --epochs 200 --window 10 "$@" --out "$cell.partial" >/dev/null
      echo "$(( $(date +%s) - start )) s on $(nproc) cores" > "$cell.partial/wall-time.txt"
      rm -rf "$cell"
      mv "$cell.partial" "$cell"
    done
  done
done

"$gossipctl" simulate --out "$out" --from-metrics "$(ls "$out"/cells/*/metrics.csv | paste -sd,)"
