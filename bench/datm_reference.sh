#!/usr/bin/env bash
# Issue 25: DATM side by side with its reference code (NUS-HPC-AI-Lab/DATM @ 97ae510) on ZCA-whitened
# CIFAR-10 at one CPU-sized budget. The reference is run as it is from .data/ref/DATM (git-ignored),
# patched only where a one-process CPU run needs it (the list: bench/datm_reference.py PATCHES, and
# bench/results/datm_reference/patches.txt); nothing of it is in the project.
#   bash bench/datm_reference.sh setup             # extract + patch the reference, kornia/yacs beside it (once)
#   bash bench/datm_reference.sh experts           # the reference's FTD experts, imported into ddtool's store (once)
#   bash bench/datm_reference.sh run SEED [SEED ...]   # distil with both, evaluate every set
#   SIDE=ref|ddtool PHASE=distill|eval bash bench/datm_reference.sh run SEED ...   # one side / phase
#   bash bench/datm_reference.sh report SEED [SEED ...]   # after run: DD-Ranking's IOR of every set, hard and learned
#   SEEDED=1 bash bench/datm_reference.sh setup|run SEED ...   # the reference seeded by SEED (else always 0)
#   SMOKE=1 bash bench/datm_reference.sh setup|experts|run 1    # the smallest settings, proves the pipeline
#   python -m bench.datm_reference table                  # the page's tables from the result files
# Budget (env, defaults = the full CPU budget): IPC 10 (or 1), EXPERTS 5 x TRAIN_EPOCHS 4, saved as one
# buffer file (the reference's correct-only initialisation moves to expert cur%10 of file cur//10
# only when expert 0 finds too few right images in a class, so a file of fewer than 10 serves),
# the start-epoch window MAX_START 3 (start epochs 0..2, targets up to epoch 4) growing from CUR_MAX 2
# over the ITERS iterations (ipc 1: fixed, as IPC1.yaml), ITERS 50 iterations of SYN_STEPS 40 student
# steps (not 80: the reference keeps the graph of every step, about 0.36 GB each on the CPU, and 80
# pass this machine's 23 GiB; ddtool's plain unroll was killed for memory at 80 too), evaluation
# EVAL_EPOCHS 300 x EVAL_REPEATS 2. Everything else is the reference's configs/CIFAR-10/ConvIN/IPC$IPC.yaml
# and its README's buffer command (lr 0.01, batch 256, rho 0.01, alpha 0.3, ZCA), and recipes/datm.toml.
# Experts are shared: both sides distil from the reference's buffers (ddtool reads them after
# 'python -m bench.datm_reference import-experts' writes them as trajectories/NAME).
# Each set is evaluated by the reference's distill/evaluation.py (its soft-label protocol, one
# network per call) and by 'ddtool eval' with the learned labels and with --labels hard.
# One thread per job (OMP_NUM_THREADS=1; THREADS=N for a stage run alone, e.g. the experts), niced.
# Resumable: a finished stage's result file in bench/results/datm_reference/ (tracked: commit them) is
# not redone.
set -euo pipefail
export OMP_NUM_THREADS="${THREADS:-1}" MKL_NUM_THREADS="${THREADS:-1}"
renice -n 10 -p $$ > /dev/null  # every job below runs niced
ROOT=$PWD
PY="${PYTHON:-$ROOT/.venv/bin/python}"
export DDTOOL_DATA="${DDTOOL_DATA:-$ROOT/.data/cache-root}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
IPC="${IPC:-10}" EXPERTS="${EXPERTS:-5}" TRAIN_EPOCHS="${TRAIN_EPOCHS:-4}" CUR_MAX="${CUR_MAX:-2}"
MAX_START="${MAX_START:-3}" ITERS="${ITERS:-50}" SYN_STEPS="${SYN_STEPS:-40}"
EVAL_EPOCHS="${EVAL_EPOCHS:-300}" EVAL_REPEATS="${EVAL_REPEATS:-2}" PIX_INIT="${PIX_INIT:-correct}"
DATA="${DATA:-.data/cifar10}" LOG="${LOG:-bench/results/datm_reference}" TAG=""
if [ -n "${SMOKE:-}" ]; then
  # the smallest run: 100 train and 100 test images per class, one expert of 2 epochs, 2 iterations
  # of 5 student steps, one evaluation network of one epoch; pix_init real (a 2-epoch expert on
  # 1,000 images classifies too few images right, and one expert is all the reference's
  # correct-only initialisation could read past its first)
  EXPERTS=1 TRAIN_EPOCHS=2 CUR_MAX=1 MAX_START=1 ITERS=2 SYN_STEPS=5 EVAL_EPOCHS=1 EVAL_REPEATS=1 PIX_INIT=real
  DATA=.data/cifar10-smoke LOG="$LOG/smoke" TAG=smoke-
fi
case "$LOG" in /*) ;; *) LOG="$ROOT/$LOG" ;; esac  # the reference's jobs run from its folders
REF="$ROOT/.data/ref/DATM"
# SEEDED=1: the reference's runs from a second extraction that takes DATM.py's seed from DATM_SEED (= the run's
# seed; bench/datm_reference.py SEED_PATCH), so that its repeats are independent draws; the experts are shared
[ -n "${SEEDED:-}" ] && REF="$ROOT/.data/ref/DATM-seeded"
SITE="$ROOT/.data/ref/site"  # kornia and yacs, for the reference only
D="$PY -m ddtool -q --store ${STORE:-.data/datm-store}"
DSPEC="imagefolder:$DATA+norm=cifar+zca"  # relative, as the NCFM pipeline: the store names the dataset by it
DS="--dataset $DSPEC --device cpu"
EXP="${TAG}n${EXPERTS}e${TRAIN_EPOCHS}"
BUF="$REF/buffers/$EXP"
mkdir -p "$LOG"
t() { local s=$SECONDS; "$@"; echo "$(date -u +%FT%TZ) $(git rev-parse --short HEAD) $((SECONDS - s))s load=$(cut -d' ' -f1 /proc/loadavg): ${STAGE:-} $*" >> "$LOG/times.txt"; }
ref_py() {  # DIR SCRIPT ARGS...: one reference script from its folder, as its README runs it
  local dir=$1; shift
  (cd "$REF/$dir" && PYTHONPATH="$SITE" "$PY" "$@")
}
ref_pix() { [ "$PIX_INIT" = correct ] && echo samples_predicted_correctly || echo real; }

case "${1:-}" in
setup)
  if [ -n "${SMOKE:-}" ] && [ ! -d "$DATA/train" ]; then  # symlinks into the full copy
    for split in train:100 test:100; do
      for c in "$ROOT"/.data/cifar10/"${split%%:*}"/*/; do
        mkdir -p "$DATA/${split%%:*}/$(basename "$c")"
        ls "$c" | sed -n "1,${split##*:}p" | while read -r f; do ln -sf "$c$f" "$DATA/${split%%:*}/$(basename "$c")/$f"; done
      done
    done
  fi
  [ -d "$SITE/kornia" ] || "$PY" -m pip install -q --target "$SITE" --no-deps kornia==0.9.0 kornia_rs==0.2.0 yacs==0.1.8
  if [ -n "${SEEDED:-}" ]; then
    "$PY" -m bench.datm_reference extract "$REF" --seeded > "$LOG/patches-seeded.txt"
    [ -e "$REF/buffers" ] || ln -s ../DATM/buffers "$REF/buffers"  # the experts of the first extraction
  else
    "$PY" -m bench.datm_reference extract "$REF" > "$LOG/patches.txt"
  fi
  ;;
experts)
  # the reference's FTD experts, its README's command at this budget, saved as one file of EXPERTS
  if [ ! -s "$LOG/ref-experts-$EXP.txt" ]; then
    STAGE=ref-experts t ref_py buffer buffer_FTD.py --dataset=CIFAR10 --model=ConvNet --train_epochs="$TRAIN_EPOCHS" \
      --num_experts="$EXPERTS" --zca --buffer_path="$BUF" --data_path="$ROOT/$DATA" --rho_max=0.01 --rho_min=0.01 \
      --alpha=0.3 --lr_teacher=0.01 --mom=0. --batch_train=256 --save_interval="$EXPERTS" > "$LOG/ref-experts-$EXP.log" 2>&1
    grep -E "^Itr|Saving" "$LOG/ref-experts-$EXP.log" | sed "s|$ROOT/||" > "$LOG/ref-experts-$EXP.txt"
  fi
  # the same experts in ddtool's store (ZCA of ddtool's own fit on the same images)
  if [ ! -s "$LOG/ddtool-experts-$EXP.json" ]; then
    STAGE=ddtool-import-experts t "$PY" -m bench.datm_reference import-experts "$BUF/CIFAR10/ConvNet" \
      --store "${STORE:-.data/datm-store}" --dataset "$DSPEC" --name "datm-$EXP" > "$LOG/ddtool-experts-$EXP.json"
  fi
  # the experts mean the same on both sides only if the inputs do: kornia's whitening against ddtool's
  [ -s "$LOG/zca-check.json" ] || STAGE=zca-check t env PYTHONPATH="$ROOT:$SITE" "$PY" -m bench.datm_reference \
    check-zca "$DATA" "$DSPEC" "$LOG/zca-check.json" > /dev/null
  ;;
run)
  shift
  SIDE="${SIDE:-both}" PHASE="${PHASE:-both}"
  B="ipc$IPC-k$ITERS-$EXP"
  # the reference's IPC$IPC.yaml; ipc 1 keeps its fixed window (Sequential_Generation False, max_start_epoch 4 -> MAX_START)
  WINDOW=(--set distill.options.min_start_epoch=0 --set distill.options.max_start_epoch="$MAX_START")
  RWIN=(--set min_start_epoch=0 --set max_start_epoch="$MAX_START")
  if [ "$IPC" = 1 ]; then
    WINDOW+=(--set distill.options.sequential_generation=false --set distill.options.lr_y=5 --set distill.options.threshold=1.1
             --set distill.options.lr_lr=1e-7)
  else
    WINDOW+=(--set distill.options.current_max_start_epoch="$CUR_MAX" --set distill.options.expansion_end_epoch="$ITERS")
    RWIN+=(--set current_max_start_epoch="$CUR_MAX" --set expansion_end_epoch="$ITERS")
  fi
  DDT_EVAL="--recipe recipes/datm.toml --epochs $EVAL_EPOCHS --repeats $EVAL_REPEATS --device cpu --json"
  ref_eval() {  # DIR OUT.json: evaluation.py, EVAL_REPEATS networks, on images.pt labels.pt lr.pt in DIR
    local logs=()
    for r in $(seq 1 "$EVAL_REPEATS"); do
      STAGE=ref-eval t ref_py distill evaluation.py --dataset=CIFAR10 --zca --data_path="$ROOT/$DATA" \
        --epoch_eval_train="$EVAL_EPOCHS" --batch_train=128 --data_dir="$1/images.pt" --label_dir="$1/labels.pt" \
        --lr_dir="$1/lr.pt" > "$1/eval-$r.log" 2>&1
      logs+=("$1/eval-$r.log")
    done
    "$PY" -m bench.datm_reference eval-log "$2" "${logs[@]}" > /dev/null
  }
  for seed in "$@"; do
    ref="ref-$B-s$seed" ddt="ddtool-$B-s$seed"
    if [ "$SIDE" != ddtool ]; then
      out="$REF/runs/$B-s$seed"
      if [ "$PHASE" != eval ] && [ ! -s "$LOG/$ref.set.json" ]; then
        "$PY" -m bench.datm_reference config "$REF" "$REF/cfg/$B-s$seed.yaml" --ipc "$IPC" \
          --set buffer_path="$BUF" --set data_path="$ROOT/$DATA" --set Iteration="$ITERS" --set eval_it=$((ITERS + 1)) \
          --set skip_first_eva=True --set syn_steps="$SYN_STEPS" --set pix_init="$(ref_pix)" "${RWIN[@]}"
        # DATM.py seeds itself (manual_seed(0); SEEDED=1: DATM_SEED); its networks seed from the clock (get_network)
        mkdir -p "$out"
        # it runs from distill/ and saves to distill/logged_files/CIFAR10/IPC/ConvNet/<wandb run name>/Normal
        DATM_SEED="$seed" DATM_RUN_NAME="$B-s$seed" STAGE=ref-distill t ref_py distill DATM.py --cfg "$REF/cfg/$B-s$seed.yaml" \
          > "$LOG/$ref.distill.log" 2>&1
        grep -E "iter =|InitialAcc" "$LOG/$ref.distill.log" | tail -n 20 > "$LOG/$ref.distill.txt"
        "$PY" -m bench.datm_reference ref-set "$REF/distill/logged_files/CIFAR10/$IPC/ConvNet/$B-s$seed/Normal" \
          "$ITERS" "$out/set.pt" > "$LOG/$ref.set.json"
      fi
      if [ "$PHASE" != distill ]; then
        if [ ! -s "$LOG/$ref.eval-datm-ref.json" ]; then
          mkdir -p "$out/eval"
          "$PY" -c "import torch,sys; d=torch.load(sys.argv[1]); torch.save(d['images'], sys.argv[2]+'/images.pt'); torch.save(d['soft_labels'], sys.argv[2]+'/labels.pt')" "$out/set.pt" "$out/eval"
          "$PY" -c "import json,torch,sys; torch.save(torch.tensor(json.load(open(sys.argv[1]))['lr']), sys.argv[2])" "$LOG/$ref.set.json" "$out/eval/lr.pt"
          ref_eval "$out/eval" "$LOG/$ref.eval-datm-ref.json"
        fi
        $D store show "synthetic/$ref" > /dev/null 2>&1 || \
          $D store import "$out/set.pt" --dataset "$DSPEC" --name "$ref" --normalized --json > "$LOG/$ref.import.json"
        lr=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['lr'])" "$LOG/$ref.set.json")
        # store import keeps the learned labels and step size (set.pt's syn_lr); --lr still names the number
        [ -s "$LOG/$ref.eval-ddtool.json" ] || \
          STAGE=ddtool-eval t $D eval "synthetic/$ref" $DDT_EVAL --lr "$lr" > "$LOG/$ref.eval-ddtool.json"
        [ -s "$LOG/$ref.eval-ddtool-hard.json" ] || \
          STAGE=ddtool-eval t $D eval "synthetic/$ref" $DDT_EVAL --lr "$lr" --labels hard > "$LOG/$ref.eval-ddtool-hard.json"
      fi
    fi
    if [ "$SIDE" != ref ]; then
      if [ "$PHASE" != eval ] && ! $D store show "synthetic/$ddt" > /dev/null 2>&1; then
        STAGE=ddtool-distill t $D distill --recipe recipes/datm.toml $DS --name "$ddt" \
          --set distill.ipc="$IPC" --set distill.iterations="$ITERS" --set distill.seed="$seed" \
          --set distill.options.trajectories="\"trajectories/datm-$EXP\"" --set distill.options.syn_steps="$SYN_STEPS" \
          --set distill.options.pix_init="\"$PIX_INIT\"" "${WINDOW[@]}" --json > "$LOG/$ddt.distill.json"
      fi
      if [ "$PHASE" != distill ]; then
        if [ ! -s "$LOG/$ddt.eval-datm-ref.json" ]; then
          mkdir -p "$REF/runs"; $D store export "synthetic/$ddt" "$REF/runs/$ddt.npz" --format npz > /dev/null
          "$PY" -m bench.datm_reference ddtool-set "$REF/runs/$ddt.npz" "$REF/runs/$ddt-eval" > "$LOG/$ddt.set.json"
          ref_eval "$REF/runs/$ddt-eval" "$LOG/$ddt.eval-datm-ref.json"
        fi
        [ -s "$LOG/$ddt.eval-ddtool.json" ] || \
          STAGE=ddtool-eval t $D eval "synthetic/$ddt" $DDT_EVAL > "$LOG/$ddt.eval-ddtool.json"
        [ -s "$LOG/$ddt.eval-ddtool-hard.json" ] || \
          STAGE=ddtool-eval t $D eval "synthetic/$ddt" $DDT_EVAL --labels hard > "$LOG/$ddt.eval-ddtool-hard.json"
      fi
    fi
  done
  ;;
report)
  # DD-Ranking's scores of each set (ddtool report): IOR on hard labels against random real subsets on
  # their classes, and on the learned labels against the same subsets on a teacher's soft labels. The
  # teacher: one network trained on the whole train split for TEACHER_EPOCHS (the experts' epochs), saved
  # by 'eval --full-data --save-teacher'. The report's own full-data bound (HLR, LRS) is cut to
  # FULL_EPOCHS 1: only the IOR columns are used.
  shift
  B="ipc$IPC-k$ITERS-$EXP" TEACHER_EPOCHS="${TEACHER_EPOCHS:-$TRAIN_EPOCHS}" FULL_EPOCHS="${FULL_EPOCHS:-1}"
  [ -s "$LOG/teacher-e$TEACHER_EPOCHS.json" ] || STAGE=teacher t $D eval --full-data --save-teacher $DS \
    --recipe recipes/datm.toml --epochs "$TEACHER_EPOCHS" --repeats 1 --json > "$LOG/teacher-e$TEACHER_EPOCHS.json"
  teacher=$($D store runs --command eval --json | "$PY" -c "import json,sys; run = json.load(open(sys.argv[1]))[0]['run']
print(next(o['ref'] for r in json.load(sys.stdin) if r['id'] == run for o in r['outputs'] if o.get('role') == 'pool'))" \
    "$LOG/teacher-e$TEACHER_EPOCHS.json")  # the pool that eval run stored
  for seed in "$@"; do
    for name in "ref-$B-s$seed" "ddtool-$B-s$seed"; do
      $D store show "synthetic/$name" > /dev/null 2>&1 || continue  # not distilled (or imported) yet
      lr=()  # the reference's step size, as its evaluations ('run') got it: for the set and its baselines
      [[ $name == ref-* ]] && lr=(--set eval.lr="$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['lr'])" "$LOG/$name.set.json")")
      [ -s "$LOG/$name.report.json" ] || STAGE=report t $D report "synthetic/$name" --teacher "$teacher" \
        --recipe recipes/datm.toml --epochs "$EVAL_EPOCHS" --repeats "$EVAL_REPEATS" --full-epochs "$FULL_EPOCHS" \
        "${lr[@]}" --device cpu --json > "$LOG/$name.report.json"
    done
  done
  ;;
*) sed -n 2,13p "$0" >&2; exit 2 ;;
esac
