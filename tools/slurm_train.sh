#!/usr/bin/env bash
# Usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py ARGS...]
# Environment: GPUS (total tasks, default 8), GPUS_PER_NODE (default 8),
# CPUS_PER_TASK (default 5), SRUN_ARGS (extra srun arguments), PYTHON.
set -euo pipefail
[ $# -ge 4 ] || { echo "Usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py ARGS...]" >&2; exit 2; }

exec bash "$(dirname "$0")/srun_tool.sh" "$1" "$2" train.py "$3" --work-dir="$4" --launcher=slurm "${@:5}"
