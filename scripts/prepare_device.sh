#!/usr/bin/env bash
# Fill the git-ignored .device/ folder with what a GPU session carries along
# (device tool: carry [".device"]); the GPU box has torch and torchvision but no registry:
#   .device/cifar10-jpeg.tar.gz      CIFAR-10 as JPEG image folders (../shared/datasets/)
#   .device/airbench-VERSION.tar.gz  airbench's sdist (pure Python; benchmarks/airbench_side.py)
# Then on the device: OUT=$OUT bash benchmarks/device_run.sh
#
#   bash scripts/prepare_device.sh                     # pip download of the pinned sdist
#   AIRBENCH_SDIST=/path/airbench-0.1.8.tar.gz bash scripts/prepare_device.sh   # a local copy
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^airbench==//p' benchmarks/requirements-bench.txt)
SDIST=.device/airbench-$VERSION.tar.gz
mkdir -p .device
[ -f .device/cifar10-jpeg.tar.gz ] || cp ../shared/datasets/cifar10-jpeg.tar.gz .device/
chmod u+w .device/cifar10-jpeg.tar.gz
if [ ! -f "$SDIST" ]; then
    if [ -n "${AIRBENCH_SDIST:-}" ]; then
        cp "$AIRBENCH_SDIST" "$SDIST"
    else
        "${PYTHON:-python3}" -m pip download "airbench==$VERSION" --no-deps --no-binary :all: -d .device
    fi
fi
SHA256=$(sed -n 's/^# sha256 of airbench-.*: //p' benchmarks/requirements-bench.txt)
echo "$SHA256  $SDIST" | sha256sum -c -
du -ch .device/cifar10-jpeg.tar.gz "$SDIST" | tail -n 1   # carry allows 64 MiB in all
