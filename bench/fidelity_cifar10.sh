#!/usr/bin/env bash
# ddtool's side of the CIFAR-10 fidelity table (BENCHMARKS.md, issue 11): IDC at the reduced budget
# the reference code was run at (ipc 10, factor 2, 10 outer x 10 inner loops, 8 network steps of 64
# real images, lr_img 5e-3), then evaluated like the reference's train.py: IDC protocol, ConvNet-3,
# 300 epochs, 3 repeats, batch 64. Data: ../shared/data/cifar10-jpeg extracted to .data/cifar10,
# normalised with the constants every reference codebase uses for CIFAR (+norm=cifar; the data's
# own std 0.247 makes DSA's brightness jitter 21 % stronger in pixels).
#   bash bench/fidelity_cifar10.sh
set -euo pipefail
export DDTOOL_DATA="${DDTOOL_DATA:-$PWD/.data/cache-root}"
D="${DDTOOL:-.venv/bin/ddtool} --store .data/fid-store"
DS="--dataset imagefolder:.data/cifar10+norm=cifar"
t() { local s=$SECONDS; "$@"; echo "# $((SECONDS - s))s: $*" >&2; }
t $D distill --recipe recipes/idc.toml $DS --name "${NAME:-idc-c10}" --device cpu \
  --set distill.iterations=10 --set distill.options.inner_loops=10 --set distill.options.net_steps=8
t $D eval "synthetic/${NAME:-idc-c10}" --epochs 300 --repeats 3 --protocol idc --batch 64 --device cpu --json
