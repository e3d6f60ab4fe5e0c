#!/usr/bin/env bash
# GPU check (issues 3 and 13), one table of benchmark commands, each with its own time limit:
#   - training: images/s and peak memory of full-width ResNet-19 on CIFAR-shaped random data
#     (batch 128, T=4), fp32 and bf16 autocast, eager and torch.compile, then ours / official-style;
#   - batched Hessian-vector products: per-product speedup of matmat (k=16) over single products on
#     the width-1/16 spiking ResNet-19 at T=2, then the Hessian command's default work (top-5 and
#     Hutch++ 99) batched against one product at a time;
#   - the surface engine: ResNet-19 (T=2) grid points/s, stacked points against the plain loop;
#   - the paper-scale study's whole chain, tiny (issue 19): synthetic CIFAR-10 files, the
#     cifar10-resnet19 preset at width 1/16, T=2, 1 epoch, 2 pairs, trained and measured on the
#     GPU through the local launcher into a STUDY.md (docs/cluster.md).
# The limits sum to 1210 s; on an H200 the whole script is expected to take well under 10 minutes.
#
# Usage (from anywhere):
#   bash benchmarks/gpu_check.sh             # on a CUDA machine
#   bash benchmarks/gpu_check.sh --dry-run   # the same commands, tiny and on the CPU, no compile
#   bash benchmarks/gpu_check.sh --print     # only print the commands (module and arguments)
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
HVP="--model resnet19 --device cuda --samples 256 --batch-size 128 --k 16"
PAPER_OUT="${TMPDIR:-/tmp}/tet-paper-study.$$"  # fresh (paper_study refuses a used folder)
# "time limit in seconds | module under benchmarks/ | arguments"
COMMANDS=(
  "70|train_throughput|$FULL $EAGER --no-bf16 --no-compile"
  "70|train_throughput|$FULL $EAGER --bf16 --no-compile"
  "125|train_throughput|$FULL $COMPILED --no-bf16 --compile"
  "125|train_throughput|$FULL $COMPILED --bf16 --compile"
  "80|train_throughput|$FULL --only both --warmup 3 --steps 20 --repeats 5"
  "80|hessian_batched|$HVP --skip-command"
  "120|hessian_batched|$HVP"
  "300|surface_gpu|--device cuda --width 1 --T 2 --samples 512 --batch-size 256 --points 32 --points-per-forward 16"
  "240|paper_study|--device cuda --out $PAPER_OUT"
)

status=0
for entry in "${COMMANDS[@]}"; do
  IFS='|' read -r limit module args <<<"$entry"
  if [ "$MODE" = "--print" ]; then
    echo "$module $args"
    continue
  fi
  if [ "$MODE" = "--dry-run" ]; then
    case "$args" in *"--compile"*) echo "== skipped in dry run (compile): $args"; continue ;; esac
    args="${args//--device cuda/--device cpu} --dry-run"
    case "$module" in surface_gpu | paper_study) ;; *) args="$args --threads 1" ;; esac
  fi
  echo "== python -m benchmarks.$module $args"
  # shellcheck disable=SC2086  # word splitting of $args is intended
  timeout "$limit" python -m "benchmarks.$module" $args
  rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "== FAILED (exit $rc; 124 = over the ${limit} s limit)"
    status=1
  fi
done
exit "$status"
