#!/usr/bin/env bash
# Issue 23: the seed's mechanisms on the CIFAR-10 fidelity budget of BENCHMARKS.md, several
# distillation seeds per arm. IDC: ipc 10, factor 2, 10 outer x 10 inner x 8 network steps; Ours:
# the same at 2 outer loops on a 2-model pool pretrained 1 epoch (as the fidelity table). Each set
# is evaluated under the IDC protocol (ConvNet-3, 300 epochs, batch 64, 2 repeats). One thread per
# job (OMP_NUM_THREADS=1): run at most two of these at once on the 2-core CPU and say so.
#   bash bench/seed_mechanics_cifar10.sh pool                 # the 2-model early-stage pool, once
#   bash bench/seed_mechanics_cifar10.sh pool_diverse         # the same, models differing in lr and augmentation
#   bash bench/seed_mechanics_cifar10.sh ARM SEED [SEED ...]
#   PHASE=distill bash bench/seed_mechanics_cifar10.sh ARM SEED ...   # distill only (PHASE=eval: evaluate only)
# Resumable: a set already in the store is not distilled again, a distillation cut off after a
# checkpoint goes on from it (ddtool distill --resume), a non-empty eval log is not re-run, so a
# chain cut off by a session's end goes on where it stopped. Every distilled set is also exported
# to $LOG/sets/NAME.npz (commit it): a fresh store (a new session's) imports it instead of
# distilling again (the import holds bit-identical images; its method reads 'imported').
# ARM: idc | ours_gauss | ours_twodir | ours_diverse (Ours gaussian on the diverse pool) |
#      dd_raw / dd_zscore (IDC + DynaDistill on the pool, m 2, normalize none / zscore) |
#      idc_randpool (IDC + random selection on the same pool: the control DynaDistill must beat)
# Data: ../shared/data/cifar10-jpeg extracted to .data/cifar10 (train/, test/). Logs and evaluation results:
# bench/results/seed_mechanics/ (tracked: commit them as they come, a session's scratch store does not outlive it).
set -euo pipefail
export OMP_NUM_THREADS=1
export DDTOOL_DATA="${DDTOOL_DATA:-$PWD/.data/cache-root}"
D="${DDTOOL:-.venv/bin/ddtool} -q --store ${STORE:-.data/seedmech-store}"
DS="--dataset imagefolder:.data/cifar10+norm=cifar --device cpu"
BUDGET="--set distill.options.inner_loops=10 --set distill.options.net_steps=8"
LOG="${LOG:-bench/results/seed_mechanics}"; mkdir -p "$LOG"
t() { local s=$SECONDS; "$@"; echo "$(date -u +%FT%TZ) $(git rev-parse --short HEAD) $((SECONDS - s))s load=$(cut -d' ' -f1 /proc/loadavg): $*" >> "$LOG/times.txt"; }

arm="$1"; shift
if [ "$arm" = pool ]; then
  $D store show pool/ours-c10n2 > /dev/null 2>&1 && exit
  t $D pretrain --recipe recipes/ours10.toml $DS --epochs 1 --n 2 --name ours-c10n2 --json > "$LOG/pool.json"
  exit
fi
if [ "$arm" = pool_diverse ]; then
  $D store show pool/ours-c10div > /dev/null 2>&1 && exit
  t $D pretrain --recipe recipes/ours10.toml $DS --epochs 1 --n 2 --name ours-c10div --set pretrain.diverse=true \
    --json > "$LOG/pool_diverse.json"
  exit
fi
DD="--recipe recipes/dynadistill.toml $DS --pool pool/ours-c10n2 $BUDGET --set distill.iterations=10 \
  --set distill.options.dynadistill.m=2 --set distill.options.dynadistill.write_back=true"
# (write_back = true: what the arms measured; the recipe's default became false after this table, from the
# digits method table of 2026-12-07)
PHASE="${PHASE:-both}"
# the newest distill run of set $1 that stopped after a checkpoint and was not resumed (empty: none)
cut_off() {
  $D store runs --command distill --json | python3 -c '
import json, sys
runs = [r for r in json.load(sys.stdin) if r.get("artifact_name") == sys.argv[1] and r.get("checkpoints")
        and r.get("status") in ("interrupted", "failed", "running") and not r.get("resumed_by")]
print(max(runs, key=lambda r: r["id"])["id"] if runs else "")' "$1"
}
SETS="$LOG/sets"  # each distilled set as an npz export (ddtool store export), tracked: a later session's
mkdir -p "$SETS"   # fresh store imports it (bit-identical images) instead of distilling it again
for seed in "$@"; do
  name="$arm-s$seed"
  run=""
  if ! $D store show "synthetic/$name" > /dev/null 2>&1 && [ -s "$SETS/$name.npz" ]; then
    $D store import "$SETS/$name.npz" --dataset imagefolder:.data/cifar10+norm=cifar --name "$name" > /dev/null
  fi
  [ "$PHASE" != eval ] && ! $D store show "synthetic/$name" > /dev/null 2>&1 && run=$(cut_off "$name")
  if [ -n "$run" ]; then
    t $D distill --resume "$run" --device cpu > "$LOG/$name.distill.txt"
  elif [ "$PHASE" != eval ] && ! $D store show "synthetic/$name" > /dev/null 2>&1; then
  case "$arm" in
    idc) t $D distill --recipe recipes/idc.toml $DS --name "$name" $BUDGET --set distill.iterations=10 --set distill.seed=$seed ;;
    ours_gauss) t $D distill --recipe recipes/ours10.toml $DS --pool pool/ours-c10n2 --name "$name" $BUDGET \
                  --set distill.iterations=2 --set distill.seed=$seed --set 'distill.schedule="gaussian"' --set distill.alpha=1.0 ;;
    ours_twodir) t $D distill --recipe recipes/ours10.toml $DS --pool pool/ours-c10n2 --name "$name" $BUDGET \
                  --set distill.iterations=2 --set distill.seed=$seed --set 'distill.schedule="two_direction"' ;;
    ours_diverse) t $D distill --recipe recipes/ours10.toml $DS --pool pool/ours-c10div --name "$name" $BUDGET \
                  --set distill.iterations=2 --set distill.seed=$seed --set 'distill.schedule="gaussian"' --set distill.alpha=1.0 ;;
    dd_raw) t $D distill $DD --name "$name" --set distill.seed=$seed --set 'distill.options.dynadistill.normalize="none"' ;;
    dd_zscore) t $D distill $DD --name "$name" --set distill.seed=$seed --set 'distill.options.dynadistill.normalize="zscore"' ;;
    idc_randpool) t $D distill --recipe recipes/idc.toml $DS --pool pool/ours-c10n2 --name "$name" $BUDGET \
                  --set distill.iterations=10 --set distill.seed=$seed --set 'distill.selection="random"' ;;
    *) echo "unknown arm $arm" >&2; exit 2 ;;
  esac > "$LOG/$name.distill.txt"
  fi
  [ -s "$SETS/$name.npz" ] || $D store export "synthetic/$name" "$SETS/$name.npz" --format npz > /dev/null
  [ "$PHASE" = distill ] && continue
  [ -s "$LOG/$name.eval.json" ] && continue
  t $D eval "synthetic/$name" --epochs 300 --repeats 2 --protocol idc --batch 64 --device cpu --json > "$LOG/$name.eval.json"
done
