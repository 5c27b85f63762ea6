#!/usr/bin/env bash
# Install the oldest versions we declare support for into a fresh virtualenv and run the
# neck and engine tests there.
#
#   bash tools/misc/check_min_versions.sh [VENV_DIR]     (default: ./.venv-min-versions)
#
# PYTHON picks the interpreter (default: python3). The torch wheel comes from PyPI (the CUDA
# build, several GB with its nvidia-* dependencies); set PIP_INDEX_URL or PIP_FIND_LINKS
# (pip reads both) to use a CPU wheel index or a folder of already downloaded wheels.
# The VENV_DIR is created from scratch each time; nothing outside it is installed or changed.
set -euo pipefail

# The floors: requirements/runtime.txt (torch, torchvision) and chrnn_plugin/_dependencies.py.
TORCH=2.6.0          # add_safe_globals with (object, 'module.name') pairs first appears here
TORCHVISION=0.21.0   # the torchvision release built for torch 2.6
MMENGINE=0.10.7
MMPRETRAIN=1.2.0
MMCV_LITE=2.0.0

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${1:-$REPO/.venv-min-versions}"
PYTHON="${PYTHON:-python3}"

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --quiet)

"${PIP[@]}" --upgrade pip
"${PIP[@]}" "torch==$TORCH" "torchvision==$TORCHVISION"
"${PIP[@]}" "mmengine==$MMENGINE" "mmcv-lite==$MMCV_LITE" "mmpretrain==$MMPRETRAIN"
# chrnn_plugin itself and the test tools, without letting pip move the pins above.
"${PIP[@]}" --no-deps -e "$REPO"
"${PIP[@]}" -r "$REPO/requirements/tests.txt" packaging pillow rich

echo "== installed"
"$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
    | grep -iE '^(torch|torchvision|mmengine|mmcv-lite|mmpretrain|numpy) '

cd "$REPO"
"$VENV/bin/python" -m pytest tests/necks tests/engine -q -p no:cacheprovider
