#!/usr/bin/env bash
# Everything that needs a GPU, in one call on a rented CUDA machine (torch only, no internet):
# the lecture experiments on full CIFAR-10 (shipped in checkpoints/demo), the GPU tests,
# and the time-to-accuracy speedruns. Results land in $OUT as they are produced, so a
# run cut short still returns what it finished.
#
#   OUT=/some/dir bash benchmarks/device_run.sh                # expects .device/cifar10-jpeg.tar.gz
#   OUT=/some/dir MODE=speedrun bash benchmarks/device_run.sh  # GPU tests + speedruns only (~8 min)
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
OUT=${OUT:-$REPO/device_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$REPO
START=$(date +%s)
note() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/summary.txt"; }
step() {  # step NAME CAP COMMAND...: capped, logged to $OUT/NAME.log, never aborts
    local name=$1 cap=$2; shift 2
    note "start $name (cap ${cap}s)"
    timeout -k 5 "$cap" "$@" >"$OUT/$name.log" 2>&1
    note "end   $name (exit $?)"
}

nvidia-smi -L | tee -a "$OUT/summary.txt"
"$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$OUT/summary.txt"
DATA=$REPO/.data/cifar10
mkdir -p "$DATA" && tar -xzf .device/cifar10-jpeg.tar.gz -C "$DATA"
export RESNET_EXPLORER_DATA=$DATA
step decode 90 "$PY" -c "from resnet_core.training.data import load_cifar10; print(load_cifar10('$DATA').train_images.shape)"

MODE=${MODE:-all}
if [ "$MODE" = all ]; then
# 1. Experiments: all runs at once (small nets leave the GPU mostly idle alone).
DEMO=$REPO/.device/demo
rm -rf "$DEMO"; mkdir -p "$DEMO"
note "start experiments"
for name in degradation cnn_vs_resnet weight_decay; do
    jobs=4; [ "$name" != degradation ] && jobs=2
    timeout -k 5 "${EXPERIMENT_CAP:-270}" "$PY" -m resnet_core experiment "$name" --device cuda \
        --out "$DEMO" --data-dir "$DATA" --jobs "$jobs" >"$OUT/exp_$name.log" 2>&1 &
done
wait
pkill -9 -f multiprocessing 2>/dev/null; note "end   experiments"
step exp_layer_responses 60 "$PY" -m resnet_core experiment layer_responses --device cuda --out "$DEMO" --data-dir "$DATA"
(cd "$DEMO" && tar -czf "$OUT/demo.tgz" .) && note "demo.tgz $(du -h "$OUT/demo.tgz" | cut -f1)"
fi

# 2. GPU tests, 3. speedruns (GPU to themselves).
step pytest_gpu 180 "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
# CUDA graphs (compile mode reduce-overhead) first: the eager runs are already recorded in
# benchmarks/results/h100-2026-11-27. The warm-up run compiles outside the timed run.
step speedrun_resnet20_graphs 150 "$PY" benchmarks/speedrun.py --preset resnet20 --data-dir "$DATA" \
    --compile-mode reduce-overhead --warmup-run --time-cap 90 --out "$OUT/speedrun_resnet20_graphs.json"
step speedrun_resnet18_graphs 170 "$PY" benchmarks/speedrun.py --preset resnet18 --data-dir "$DATA" \
    --compile-mode reduce-overhead --warmup-run --time-cap 100 --out "$OUT/speedrun_resnet18_graphs.json"
grep -h "skipping cudagraphs" "$OUT"/speedrun_*_graphs.log | sort | uniq -c | tee -a "$OUT/summary.txt"
if [ "$MODE" = all ]; then
step speedrun_resnet20 75 "$PY" benchmarks/speedrun.py --preset resnet20 --data-dir "$DATA" \
    --time-cap 60 --out "$OUT/speedrun_resnet20.json"
step speedrun_resnet18 100 "$PY" benchmarks/speedrun.py --preset resnet18 --data-dir "$DATA" \
    --time-cap 85 --out "$OUT/speedrun_resnet18.json"
fi
note "total"
for f in "$OUT"/*.log; do echo "== $f"; tail -n 6 "$f"; done >"$OUT/tails.txt"
cat "$OUT/tails.txt"
