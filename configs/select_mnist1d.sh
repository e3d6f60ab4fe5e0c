#!/usr/bin/env bash
# Settings selection for configs/mnist1d.json (protocol: configs/README.md).
# Every candidate trains SDT and TET, seed 0, on MNIST-1D with the last 20 % of the training split
# held out as the evaluation split (--mnist1d-validation 0.2); the test split is never read.
# Usage: bash configs/select_mnist1d.sh OUT_DIR [CANDIDATE...]   (candidates: A B C D; default all)
set -euo pipefail
out=${1:?usage: select_mnist1d.sh OUT_DIR [CANDIDATE...]}
shift
common=(--dataset mnist1d --model mnist1d_snn --T 4 --batch-size 128 --epochs 20 --tet-phi 1.0
        --mnist1d-validation 0.2 --seeds 0 --method sdt tet --quiet --resume)
declare -A candidate=(
  [A]="--encoding static --tet-lambda 0.05 --lr 5e-3"
  [B]="--encoding static --tet-lambda 0.05 --lr 1e-3"
  [C]="--encoding sequence --tet-lambda 1e-3 --lr 5e-3"
  [D]="--encoding sequence --tet-lambda 1e-3 --lr 1e-3"
)
for name in "${@:-A B C D}"; do
  for c in $name; do
    # shellcheck disable=SC2086
    /usr/bin/time -f "$c: wall %e s, user %U s, sys %S s" \
      python3 training/run.py "${common[@]}" ${candidate[$c]} --out "$out/$c"
  done
done
