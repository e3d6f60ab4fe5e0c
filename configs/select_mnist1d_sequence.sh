#!/usr/bin/env bash
# Settings selection for configs/mnist1d_sequence.json (protocol: configs/README.md, "mnist1d_sequence.json").
# Every candidate trains SDT and TET, seed 0, on MNIST-1D's default draw with the sequence encoding
# and the last 20 % of the training split held out as the evaluation split
# (--mnist1d-validation 0.2); the test split is never read, and no study draw is used.
# Usage: bash configs/select_mnist1d_sequence.sh OUT_DIR [CANDIDATE...]   (default: all six)
set -euo pipefail
out=${1:?usage: select_mnist1d_sequence.sh OUT_DIR [CANDIDATE...]}
shift
common=(--dataset mnist1d --model mnist1d_snn --encoding sequence --tet-lambda 1e-3 --lr 5e-3
        --batch-size 128 --epochs 20 --tet-phi 1.0 --mnist1d-validation 0.2 --seeds 0
        --method sdt tet --no-gradient-stats --quiet --resume)
declare -A candidate=(
  [S1]="--T 4 --tau 0.5"
  [S2]="--T 4 --tau 0.9"
  [S3]="--T 4 --tau 1.0"
  [S4]="--T 8 --tau 0.5"
  [S5]="--T 8 --tau 0.9"
  [S6]="--T 8 --tau 1.0"
)
for name in "${@:-S1 S2 S3 S4 S5 S6}"; do
  for c in $name; do
    # shellcheck disable=SC2086
    /usr/bin/time -f "$c: wall %e s, user %U s, sys %S s" \
      python3 training/run.py "${common[@]}" ${candidate[$c]} --out "$out/$c"
  done
done
