#!/usr/bin/env bash
# Everything that needs a GPU, ordered by value for a 15-minute device budget (one call runs
# at most 10 minutes, and the first call spends a couple of minutes starting the machine).
# MODE picks groups (default all); the caps below are upper bounds, not estimates:
#   tests      GPU tests                                                    cap 2 min
#   speedrun   ResNet-18 recipe + airbench94, 3 seeds; ResNet-20, 3 seeds   caps 4.5 + 2.5 min
#   ablation   ResNet-18, each ingredient taken out in turn, 1 seed          cap 4.5 min
#   steptime   ms/step eager vs compile vs CUDA graphs, both nets, batch 1024 and 512  5 min
#   he2016     1-epoch timing run, then he2016 or (if that would not fit) he2016_b512  2.5 + 8 min
#   lecture    weight_decay and cnn_vs_resnet at once (3 seeds if the CLI has --seeds)  4.5 min
# Every step is capped with `timeout` (which ends the step's whole process group) and writes
# to $OUT as it goes, so a call cut short still returns what it finished.
#
# Before the session, here: bash scripts/prepare_device.sh   (fills .device/, carried along)
#   OUT=$OUT MODE="tests speedrun" bash benchmarks/device_run.sh   # call 1 (caps: 9 min)
#   OUT=$OUT MODE="ablation steptime" bash benchmarks/device_run.sh # call 2, if time is left
#   OUT=$OUT MODE=lecture bash benchmarks/device_run.sh            # later: 3 seeds of two slides
#   OUT=$OUT MODE=he2016 bash benchmarks/device_run.sh             # a call of its own
#   OUT=/tmp/o TINY=1 bash benchmarks/device_run.sh  # CPU rehearsal: tiny runs, GPU steps skip
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
OUT=${OUT:-$REPO/device_out}
MODE=${MODE:-all}
TINY=${TINY:-0}
PY=${PYTHON:-python3}
SEEDS=3
mkdir -p "$OUT"
export PYTHONPATH=$REPO
START=$(date +%s)
note() { echo "[$(($(date +%s) - START))s] $*" | tee -a "$OUT/summary.txt"; }
want() { [ "$MODE" = all ] || [[ " $MODE " == *" $1 "* ]]; }
step() { # step NAME CAP COMMAND...: capped, logged to $OUT/NAME.log, never aborts the script
    local name=$1 cap=$2
    shift 2
    note "start $name (cap ${cap}s)"
    timeout -k 5 "$cap" "$@" >"$OUT/$name.log" 2>&1
    note "end   $name (exit $?)"
}
CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")
gpu() { # gpu NAME: true with a GPU, else notes the skip
    [ "$CUDA" = 1 ] && return 0
    note "skip  $1: no CUDA"
    return 1
}

# Speedrun settings; TINY=1 appends TINY_RUN to every speedrun: tiny synthetic runs on the CPU.
RUN=(--seeds "$SEEDS" --warmup-run)
TINY_RUN=()
if [ "$TINY" = 1 ]; then
    SEEDS=1
    RUN=()
    TINY_RUN=(--seeds 1 --device cpu --no-compile --epochs 1 --dataset synthetic --subset 256
        --time-cap 600 --airbench-timeout 30)
fi
AIRBENCH=$REPO/.device/airbench-0.1.8.tar.gz # the version pinned in requirements-bench.txt

# (a) Data: the JPEG copy, decoded once into the tensor cache.
"$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA')" | tee -a "$OUT/summary.txt"
DATA=${RESNET_EXPLORER_DATA:-$REPO/.data/cifar10}
if [ ! -d "$DATA/train" ]; then
    mkdir -p "$DATA" && tar -xzf .device/cifar10-jpeg.tar.gz -C "$DATA"
fi
export RESNET_EXPLORER_DATA=$DATA
step decode 120 "$PY" -c "from resnet_core.training.data import load_cifar10; print(load_cifar10('$DATA').train_images.shape)"

# (b) GPU tests.
want tests && gpu pytest_gpu &&
    step pytest_gpu 120 "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider

# (c, d) Speedruns: ResNet-18 with airbench94 on the same data; ResNet-20 reuses its d.
if want speedrun; then
    step speedrun_resnet18 270 "$PY" benchmarks/speedrun.py --preset resnet18 "${RUN[@]}" \
        --data-dir "$DATA" --time-cap 80 --airbench "$AIRBENCH" --airbench-timeout 100 \
        --out "$OUT/speedrun_resnet18.json" "${TINY_RUN[@]}"
    GAP=()
    [ -f "$OUT/speedrun_resnet18.json" ] && GAP=(--jpeg-gap-from "$OUT/speedrun_resnet18.json")
    step speedrun_resnet20 150 "$PY" benchmarks/speedrun.py --preset resnet20 "${RUN[@]}" \
        --data-dir "$DATA" --time-cap 55 "${GAP[@]}" --out "$OUT/speedrun_resnet20.json" \
        "${TINY_RUN[@]}"
fi

# (e) Ablation: what each ingredient of the ResNet-18 recipe buys, one seed each.
want ablation && step ablation_resnet18 270 "$PY" benchmarks/speedrun.py --preset resnet18 \
    "${RUN[@]}" --seeds 1 --ablation --data-dir "$DATA" --time-cap 40 \
    --out "$OUT/ablation_resnet18.json" "${TINY_RUN[@]}"

# (e2) Step time: eager against torch.compile against CUDA graphs (which should be default).
STEP_TIME=(--batch-sizes 1024 512 --timeout 120)
[ "$TINY" = 1 ] && STEP_TIME=(--device cpu --nets resnet20 --batch-sizes 32 --steps 2 --warmup 1
    --modes eager graphs)
want steptime && step step_time 300 "$PY" benchmarks/step_time.py "${STEP_TIME[@]}" \
    --out "$OUT/step_time.json"

# (f, g) Experiments (results shipped in checkpoints/demo), archived into $OUT/demo.tgz.
DEMO=$REPO/.device/demo
HELP=$("$PY" -m resnet_core experiment --help 2>&1)
known() { # known NAME: true if this checkout defines the experiment, else notes the skip
    [[ "$HELP" == *"$1"* ]] && return 0
    note "skip  $1: not an experiment of this checkout"
    return 1
}
experiment() { # experiment NAME CAP ARGS...
    local name=$1 cap=$2
    shift 2
    known "$name" || return
    rm -rf "${DEMO:?}/$name" # an experiment refuses a folder holding earlier runs
    step "exp_$name" "$cap" "$PY" -m resnet_core experiment "$name" --device cuda \
        --out "$DEMO" --data-dir "$DATA" "$@"
}
SEEDS_FLAG=()
[[ "$HELP" == *"--seeds"* ]] && SEEDS_FLAG=(--seeds "$SEEDS")
if want he2016 && gpu he2016 && known he2016; then
    # A 1-epoch run first says how long the whole one takes (it goes to a scratch folder);
    # he2016_plan.py picks batch 128 if that fits the cap, else the batch-512 fallback.
    rm -rf "$REPO/.device/timing"
    step exp_he2016_timing 150 "$PY" -m resnet_core experiment he2016 --device cuda \
        --out "$REPO/.device/timing" --data-dir "$DATA" --jobs 9 --epochs 1
    PLAN=$("$PY" benchmarks/he2016_plan.py "$REPO/.device/timing/he2016" --cap 470)
    note "plan: ${PLAN:-he2016_b512 (the plan script failed)}"
    CHOSEN=${PLAN%% *}
    [ "$CHOSEN" = he2016 ] || CHOSEN=he2016_b512
    experiment "$CHOSEN" 480 --jobs 9
fi
if want lecture && gpu lecture; then
    [ ${#SEEDS_FLAG[@]} = 0 ] && note "experiment CLI has no --seeds: one seed each"
    # Both at once: small nets leave most of the GPU idle alone.
    experiment weight_decay 270 --jobs 3 "${SEEDS_FLAG[@]}" &
    experiment cnn_vs_resnet 270 --jobs 3 "${SEEDS_FLAG[@]}" &
    wait
fi
[ -d "$DEMO" ] && (cd "$DEMO" && tar -czf "$OUT/demo.tgz" .) && note "demo.tgz $(du -h "$OUT/demo.tgz" | cut -f1)"

note "total (MODE=$MODE TINY=$TINY)"
for f in "$OUT"/*.log; do echo "== $f" && tail -n 12 "$f"; done >"$OUT/tails.txt"
cat "$OUT/tails.txt"
