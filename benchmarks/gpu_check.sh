#!/usr/bin/env bash
# GPU check of the training fast paths (issue 3): images/s and peak memory of full-width ResNet-19
# on CIFAR-shaped random data (batch 128, T=4), fp32 and bf16 autocast, eager and torch.compile
# (200 timed steps eager, 100 compiled), then the ours / official-style throughput ratio on the GPU.
# Every command has its own time limit, so the whole script ends within 8 minutes.
#
# Usage (from anywhere):
#   bash benchmarks/gpu_check.sh             # on a CUDA machine
#   bash benchmarks/gpu_check.sh --dry-run   # the same commands, tiny and on the CPU, no compile
#   bash benchmarks/gpu_check.sh --print     # only print the commands
set -u
cd "$(dirname "$0")/.."
MODE="${1:-run}"
case "$MODE" in
  run | --dry-run | --print) ;;
  *) echo "usage: bash benchmarks/gpu_check.sh [--dry-run | --print]" >&2; exit 2 ;;
esac

FULL="--device cuda --width 1 --batch-size 128 --T 4 --image-size 32"
EAGER="--only ours --no-check --warmup 5 --steps 50 --repeats 4"
COMPILED="--only ours --no-check --warmup 3 --steps 25 --repeats 4"  # warm-up includes compiling
# "time limit in seconds | arguments of benchmarks/train_throughput.py"; limits sum to 470 s
COMMANDS=(
  "70|$FULL $EAGER --no-bf16 --no-compile"
  "70|$FULL $EAGER --bf16 --no-compile"
  "125|$FULL $COMPILED --no-bf16 --compile"
  "125|$FULL $COMPILED --bf16 --compile"
  "80|$FULL --only both --warmup 3 --steps 20 --repeats 5"
)

status=0
for entry in "${COMMANDS[@]}"; do
  limit="${entry%%|*}"
  args="${entry#*|}"
  if [ "$MODE" = "--print" ]; then
    echo "$args"
    continue
  fi
  if [ "$MODE" = "--dry-run" ]; then
    case "$args" in *"--compile"*) echo "== skipped in dry run (compile): $args"; continue ;; esac
    args="$args --dry-run --device cpu --threads 1"
  fi
  echo "== python -m benchmarks.train_throughput $args"
  # shellcheck disable=SC2086  # word splitting of $args is intended
  timeout "$limit" python -m benchmarks.train_throughput $args
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "== FAILED (exit $rc; 124 = over the ${limit} s limit)"
    status=1
  fi
done

# ---- batched Hessian-vector products (issue 13; benchmarks/hessian_batched.py) ------------------
# Per-product speedup of HessianOperator.matmat (k=16) over single products on the width-1/16
# spiking ResNet-19 at T=2 (random CIFAR-shaped data, 256 samples), then the Hessian command's
# default work (top-5 + Hutch++ 99) batched against one product at a time. Limits sum to 200 s.
HVP_COMMANDS=(
  "80|--model resnet19 --device cuda --samples 256 --batch-size 128 --k 16 --skip-command"
  "120|--model resnet19 --device cuda --samples 256 --batch-size 128 --k 16"
)
for entry in "${HVP_COMMANDS[@]}"; do
  limit="${entry%%|*}"
  args="${entry#*|}"
  if [ "$MODE" = "--print" ]; then
    echo "$args"
    continue
  fi
  if [ "$MODE" = "--dry-run" ]; then
    args="${args//--device cuda/--device cpu} --dry-run --threads 1"
  fi
  echo "== python -m benchmarks.hessian_batched $args"
  # shellcheck disable=SC2086  # word splitting of $args is intended
  timeout "$limit" python -m benchmarks.hessian_batched $args
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "== FAILED (exit $rc; 124 = over the ${limit} s limit)"
    status=1
  fi
done
# ---- end of batched Hessian-vector products -----------------------------------------------------
exit "$status"
