#!/usr/bin/env bash
# The one-call GPU benchmark (issues 15, 24, 25): python -m bench.gpu on the CIFAR-10 archives in
# .data/cifar10-archives, one Markdown table to .data/gpu_bench.md (or $OUT/gpu_bench.md where the
# device tool sets $OUT, so a run cut off at its limit still returns the rows it measured).
# Its parts, in order, inside bench.gpu's own 540 s budget (the device tool's limit is 600 s a call):
# DM, IDC and eval steps (CIFAR-10 shape); Ours10, NCFM (recipes/ncfm.toml) and DATM (recipes/datm.toml)
# at their papers' CIFAR-10 ipc 10 settings, a few iterations timed and extrapolated to the recipes'
# 200 / 20000 / 10000; one iteration's peak CUDA memory per method (bench.method_memory: NCFM, MTT and
# DATM plain and checkpointed, IDC) at the CIFAR-10 shape; then the CIFAR-100 shape's steps and memory
# rows with what is left. --only / --shapes / --budget-s narrow it.
#   bash bench/gpu.sh                 here: copies ../shared/data/cifar10-jpeg/*.tar.gz into
#                                     .data/cifar10-archives (git-ignored; name it in `carry`), then runs
#   PREPARE_ONLY=1 bash bench/gpu.sh  only that copy
#   bash bench/gpu.sh --tiny          the CPU-sized check; any other bench.gpu option passes through
#   bash bench/gpu.sh --frontier [bench.frontier options]
#                                     issue 27's frontier at the papers' budgets on the GPU instead: every
#                                     method's recipe at its own CIFAR-10 iterations (--budget paper),
#                                     checkpoints every 600 s, each evaluated under the IDC protocol (1000
#                                     epochs x 3); hours, not one call: resumable from $OUT/frontier/state.json
#                                     only while the store (.data/frontier-gpu-store) survives
# On the GPU machine its own python3 (with torch) runs the checkout through PYTHONPATH: no install.
set -euo pipefail
cd "$(dirname "$0")/.."
ARCHIVES=.data/cifar10-archives
if [[ ! -f $ARCHIVES/train.tar.gz && -f ../shared/data/cifar10-jpeg/train.tar.gz ]]; then
  mkdir -p "$ARCHIVES" && cp ../shared/data/cifar10-jpeg/{train,test}.tar.gz "$ARCHIVES"/
fi
[[ "${PREPARE_ONLY:-0}" == 1 ]] && { ls -l "$ARCHIVES"; exit 0; }
PY="${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3)}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}" DDTOOL_DATA="${DDTOOL_DATA:-$PWD/.data/gpu-bench-cache}"
if [[ "${1:-}" == --frontier ]]; then
  shift
  DATA=$("$PY" -c 'import sys; from pathlib import Path; from bench.gpu import prepare_cifar10
print(prepare_cifar10(Path(sys.argv[1]), Path(".data/gpu-bench-data")))' "$ARCHIVES")
  exec "$PY" -m bench.frontier --dataset "imagefolder:$DATA+norm=cifar" --device cuda --budget paper \
    --spacing 600 --protocol idc --epochs 1000 --repeats 3 --store .data/frontier-gpu-store \
    --out "${OUT:-.data}/frontier" "$@"
fi
exec "$PY" -m bench.gpu --data "$ARCHIVES" --out "${OUT:-.data}/gpu_bench.md" "$@"
