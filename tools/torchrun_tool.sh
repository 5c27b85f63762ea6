#!/usr/bin/env bash
# Usage: tools/torchrun_tool.sh NPROC_PER_NODE TOOL [TOOL ARGS...]
# Runs tools/TOOL (train.py or test.py) under torchrun;
# dist_train.sh and dist_test.sh are its two entry points.
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
# Runs on CPU-only machines too (gloo backend, one process per NPROC_PER_NODE).
set -euo pipefail

NPROC_PER_NODE=$1
TOOL=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}
TOOLS_DIR=$(dirname "$0")

PYTHONPATH="$TOOLS_DIR/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC_PER_NODE" \
    --master_port="$PORT" \
    "$TOOLS_DIR/$TOOL" \
    "${@:3}"
