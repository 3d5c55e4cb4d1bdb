#!/usr/bin/env bash
# One-shot GPU check of the training engine, for a rented CUDA machine (e.g. one H100).
#
#   OUT=/some/dir bash benchmarks/gpu_check.sh
#
# Expects: the repo checkout as the working directory, a python with torch (CUDA) and
# pytest ($PYTHON, else .venv/bin/python, else python3), and the dataset tarball at
# .device/cifar10-jpeg.tar.gz (or a CIFAR-10 folder in $RESNET_EXPLORER_DATA). No
# internet, no torchinfo/streamlit needed. Every step has a hard `timeout`; a failing step
# is logged and the script goes on. Total wall time stays under 7 minutes. Everything is
# written to $OUT (default ./gpu_check_out): one log per step plus summary.txt.
#
# Dry run of the logic on a CPU machine with tiny caps:
#   GPU_CHECK_DRY=1 OUT=/tmp/gpu bash benchmarks/gpu_check.sh
set -u
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.." || exit 1
REPO=$(pwd)
OUT=${OUT:-$REPO/gpu_check_out}
mkdir -p "$OUT"
DRY=${GPU_CHECK_DRY:-0}
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
START=$(date +%s)

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then PY=.venv/bin/python
else PY=python3; fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}

note() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$SUMMARY"; }

# step NAME SECONDS COMMAND...: run with a hard cap, log to $OUT/NAME.log, never abort.
step() {
    local name=$1 cap=$2; shift 2
    note "start $name (cap ${cap}s)"
    timeout -k 10 "$cap" "$@" >"$OUT/$name.log" 2>&1
    local code=$?
    if [ $code -eq 0 ]; then note "ok    $name"
    elif [ $code -eq 124 ] || [ $code -eq 137 ]; then note "TIMEOUT $name after ${cap}s"
    else note "FAIL  $name (exit $code)"; fi
    tail -n 3 "$OUT/$name.log" | sed 's/^/        /' >>"$SUMMARY"
    return 0
}

note "python: $PY"
step env 60 "$PY" -c "
import torch, platform
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'python', platform.python_version())
print('cuda available', torch.cuda.is_available())
if torch.cuda.is_available(): print(torch.cuda.get_device_name(0))
import resnet_core, resnet_core.data, resnet_core.train, resnet_core.runs
print('imports ok (no torchinfo/streamlit needed)')
"
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || true

# Data: unpack once into .data/cifar10 (the tests' cifar_root fixture uses the same place).
DATA=${RESNET_EXPLORER_DATA:-$REPO/.data/cifar10}
if [ ! -f "$DATA/.unpacked" ] && [ ! -d "$DATA/train" ]; then
    if [ -f .device/cifar10-jpeg.tar.gz ]; then
        step unpack 120 bash -c "rm -rf '$DATA.tmp' && mkdir -p '$DATA.tmp' && tar -xzf .device/cifar10-jpeg.tar.gz -C '$DATA.tmp' && touch '$DATA.tmp/.unpacked' && rm -rf '$DATA' && mv '$DATA.tmp' '$DATA'"
    else
        note "no dataset: .device/cifar10-jpeg.tar.gz missing and RESNET_EXPLORER_DATA unset"
    fi
fi
export RESNET_EXPLORER_DATA=$DATA
step decode 120 "$PY" -c "
import time; from resnet_core.data import load_cifar10
t = time.time(); d = load_cifar10('$DATA'); print('decoded/cached', tuple(d.train_images.shape), f'{time.time()-t:.1f}s')
t = time.time(); load_cifar10('$DATA'); print('cached load', f'{time.time()-t:.2f}s')
"

if [ "$DRY" = 1 ]; then
    step pytest_gpu 120 "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
    step speedrun_resnet20 60 "$PY" benchmarks/speedrun.py --preset resnet20 --dataset synthetic \
        --subset 512 --epochs 1 --batch-size 256 --time-cap 20 --out "$OUT/speedrun_resnet20.json"
    step speedrun_resnet18 60 "$PY" benchmarks/speedrun.py --preset resnet18 --dataset synthetic \
        --subset 256 --epochs 1 --batch-size 128 --time-cap 20 --out "$OUT/speedrun_resnet18.json"
else
    step pytest_gpu 100 "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
    step speedrun_resnet20 95 "$PY" benchmarks/speedrun.py --preset resnet20 --data-dir "$DATA" \
        --time-cap 75 --warmup-run --out "$OUT/speedrun_resnet20.json"
    step speedrun_resnet18 130 "$PY" benchmarks/speedrun.py --preset resnet18 --data-dir "$DATA" \
        --time-cap 110 --warmup-run --out "$OUT/speedrun_resnet18.json"
fi
note "total $(( $(date +%s) - START ))s; logs in $OUT"
grep -h '"reached"\|time_to_target_train_s\|best_test_acc' "$OUT"/speedrun_*.json 2>/dev/null >>"$SUMMARY"
cat "$SUMMARY"
exit 0
