#!/usr/bin/env bash
# The ablation of REPRODUCTION.md: the paper's protocol with one ingredient switched at a time,
# MLP, 10 and 50 nodes, rules delta-sum-in-place (the paper's), delta-sum and average, seeds 1
# and 2 ($ABLATION_METHODS and $ABLATION_SEEDS narrow or widen that). Each variant is a grid (scripts/grid.sh) of its own under docs/reproduction/paper/
# ablation/VARIANT, kept across sittings; the baseline is the main grid's cells.
#
#   scripts/ablation.sh [VARIANT...]      (default: all of them, in this order)
#
#   lockstep     the same exchange in lockstep epochs (asynchrony off)
#   relay        lockstep, every node's latest message relayed 3 hops per epoch, intake all
#   relay-1      the relay as earlier versions ran it: intake one message per epoch
#   intake-1     the paper's protocol taking in one message per epoch
#   random       the paper's protocol on a random graph of average degree 4 (no latency map)
#   files        the paper's protocol on the authors' topology files (f10.json, f50.json)
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/reproduction/paper/ablation
methods=${ABLATION_METHODS:-delta-sum-in-place,delta-sum,average}
seeds=${ABLATION_SEEDS:-1,2}
common=(--eval-samples 2000)
files=learner/tests/fixtures/flocky-topologies

variants=("$@")
[ "${#variants[@]}" -gt 0 ] || variants=(lockstep relay relay-1 intake-1 random files)
for variant in "${variants[@]}"; do
  case "$variant" in
    lockstep) scripts/grid.sh mlp 10,50 "$methods" "$seeds" "$out/lockstep" "${common[@]}" --protocol lockstep ;;
    relay) scripts/grid.sh mlp 10,50 "$methods" "$seeds" "$out/relay" "${common[@]}" --protocol relay --intake all ;;
    relay-1) scripts/grid.sh mlp 10,50 "$methods" "$seeds" "$out/relay-1" "${common[@]}" --protocol relay --intake 1 ;;
    intake-1) scripts/grid.sh mlp 10,50 "$methods" "$seeds" "$out/intake-1" "${common[@]}" --intake 1 ;;
    random) scripts/grid.sh mlp 10,50 "$methods" "$seeds" "$out/random" "${common[@]}" --topology random --degree 4 ;;
    files)
      scripts/grid.sh mlp 10 "$methods" "$seeds" "$out/files-10" "${common[@]}" --topology-file "$files/f10.json"
      scripts/grid.sh mlp 50 "$methods" "$seeds" "$out/files-50" "${common[@]}" --topology-file "$files/f50.json"
      ;;
    *) echo "ablation: unknown variant $variant" >&2; exit 2 ;;
  esac
done
