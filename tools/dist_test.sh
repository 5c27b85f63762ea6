#!/usr/bin/env bash
# Usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC_PER_NODE [test.py ARGS...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
# Runs on CPU-only machines too (gloo backend, one process per NPROC_PER_NODE).
set -euo pipefail
[ $# -ge 3 ] || { echo "Usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC_PER_NODE [test.py ARGS...]" >&2; exit 2; }

exec bash "$(dirname "$0")/torchrun_tool.sh" "$3" test.py "$1" "$2" --launcher pytorch "${@:4}"
