#!/usr/bin/env bash
# CIFAR-10 (JPEG ImageFolder copy of ../shared/data/cifar10-jpeg, extracted to .data/cifar10) at a
# CPU-sized budget: Ours (Acc-DD) at ipc 10, evaluated on ConvNet-3 like the DM / random rows of
# BENCHMARKS.md and on AlexNet beside them. WITH_IDC=1 also runs IDC at the same outer loops.
#   bash bench/cifar10_cpu.sh      (needs synthetic/dm-c10 and synthetic/rnd-c10 from BENCHMARKS.md)
set -euo pipefail
export DDTOOL_DATA="${DDTOOL_DATA:-$PWD/.data/cache-root}"
D="${DDTOOL:-.venv/bin/ddtool} --store .data/bench-store"
DS="--dataset imagefolder:.data/cifar10"
BUDGET=(--set distill.iterations=10 --set distill.options.inner_loops=10 --set distill.options.net_steps=8)
t() { local s=$SECONDS; "$@"; echo "# $((SECONDS - s))s: $*" >&2; }
t $D pretrain $DS --n 2 --epochs 1 --name c10-pool --set net.width=128
t $D distill --recipe recipes/ours10.toml --set data.dataset=\"imagefolder:.data/cifar10\" "${BUDGET[@]}" \
    --pool pool/c10-pool --name ours-c10
if [[ "${WITH_IDC:-0}" == 1 ]]; then
  t $D distill --recipe recipes/idc.toml --set data.dataset=\"imagefolder:.data/cifar10\" "${BUDGET[@]}" \
      --set distill.lr_img=0.005 --name idc-c10
fi
t $D eval synthetic/ours-c10 --epochs 300 --repeats 2 --net convnet3
t $D eval synthetic/rnd-c10 synthetic/dm-c10 synthetic/ours-c10 --epochs 100 --repeats 1 --net alexnet
