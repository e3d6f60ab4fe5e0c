#!/usr/bin/env bash
# Pilot that fixes the population's stopping criterion (protocol: configs/README.md, "Population
# stopping criterion"). Six runs at the two corners of the population's grid, on a draw used for
# nothing else (MNIST-1D seed 999), 30 epochs (the cap); only the train-split L_SDT is read.
# Usage: bash configs/pilot_stopping.sh OUT_DIR
set -euo pipefail
out=${1:?usage: pilot_stopping.sh OUT_DIR}
common=(--config configs/mnist1d.json --epochs 30 --mnist1d-seed 999 --test-every 30 --seeds 0
        --no-gradient-stats --quiet --resume)
for corner in "--lr 2.5e-3 --batch-size 256" "--lr 1e-2 --batch-size 64"; do
  for loss in "--method sdt" "--method tet --tet-lambda 0.05" "--method tet --tet-lambda 1e-3"; do
    name=$(echo "$corner $loss" | tr -d ' -' | tr '.' 'p')
    # shellcheck disable=SC2086
    python3 training/run.py "${common[@]}" $corner $loss --out "$out/$name"
  done
done
echo "epoch at which each run first reaches train_eval_l_sdt <= threshold:"
python3 - "$out" <<'PY'
import sys
from pathlib import Path
import pandas as pd
for path in sorted(Path(sys.argv[1]).rglob("metrics.csv")):
    loss = pd.read_csv(path).set_index("epoch")["train_eval_l_sdt"]
    first = {t: next((int(e) for e, v in loss.items() if v <= t), None) for t in (0.01, 0.02, 0.05, 0.1)}
    print(path.parent.parent.name, f"final {loss.iloc[-1]:.4f}", first)
PY
