#!/usr/bin/env bash
# Usage: tools/dist_train.sh CONFIG NPROC_PER_NODE [train.py ARGS...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
# Runs on CPU-only machines too (gloo backend, one process per NPROC_PER_NODE).
set -euo pipefail
[ $# -ge 2 ] || { echo "Usage: tools/dist_train.sh CONFIG NPROC_PER_NODE [train.py ARGS...]" >&2; exit 2; }

exec bash "$(dirname "$0")/torchrun_tool.sh" "$2" train.py "$1" --launcher pytorch "${@:3}"
