#!/usr/bin/env bash
# One prepared check of the GPU paths, about five minutes on one GPU.
#
#   tools/analysis_tools/gpu_check.sh [--device cuda|cpu] [--out DIR]
#
# Runs, each step logged to DIR/<step>.log and summarised in DIR/summary.md:
#   1. the environment (torch, CUDA, GPUs);
#   2. the tensor tests on the device (pytest --device DEVICE -m "not slow");
#   3. a short train and test through tools/train.py and tools/test.py;
#   4. benchmark_neck.py on the device: fast path vs the reference loop, time
#      share vs FLOP share, then bf16 and fp16 autocast;
#   5. with two or more GPUs, a 2-process dist_train.sh smoke run.
# --device cpu is a quick dry run of the same steps on a small subset (CI runs
# it). Exits non-zero if any step failed; the summary says which.
set -uo pipefail

DEVICE=cuda
OUT=work_dirs/gpu_check
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) DEVICE="${2:?--device needs cuda or cpu}"; shift 2 ;;
        --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (expected --device cuda|cpu, --out DIR)" >&2; exit 2 ;;
    esac
done
if [[ "$DEVICE" != cuda && "$DEVICE" != cpu ]]; then
    echo "gpu_check.sh: --device must be cuda or cpu, got '$DEVICE'" >&2
    exit 2
fi

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON="${PYTHON:-python}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
SUMMARY="$OUT/summary.md"
FAILED=0

if [[ "$DEVICE" == cuda ]]; then
    if ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
        echo "gpu_check.sh: --device cuda but torch.cuda.is_available() is False" >&2
        exit 2
    fi
    NUM_GPUS="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')"
    # The full tensor suite; the tools tests only train and test once.
    TEST_PATHS=(tests/necks tests/engine tests/deployment)
    TOOLS_TESTS='test_train_two_epochs or test_test_from_checkpoint'
    BENCH_ARGS=(--batch-size 32)
    AMP_DTYPES=(bf16 fp16)
else
    NUM_GPUS=0
    export CUDA_VISIBLE_DEVICES=
    # Dry run: a small subset that still goes through every step.
    TEST_PATHS=(tests/necks/test_neck_behaviour.py)
    TOOLS_TESTS='test_train_two_epochs'
    BENCH_ARGS=(--batch-size 2 --image-size 64 --hidden-channels 16 --repeats 1)
    AMP_DTYPES=(bf16)
fi

{
    echo "# GPU check ($DEVICE)"
    echo
    echo "Started $(date -u '+%Y-%m-%d %H:%M:%S UTC') in $REPO at commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)."
    echo
    echo "| step | result | seconds | log |"
    echo "|---|---|---|---|"
} > "$SUMMARY"

# step NAME COMMAND...: run it, log its output, add a row to the summary.
step() {
    local name="$1"; shift
    local log="$OUT/$name.log" start=$SECONDS status
    echo "== $name: $*"
    (cd "$REPO" && "$@") > "$log" 2>&1
    status=$?
    local result=PASS
    if [[ $status -ne 0 ]]; then result="FAIL (exit $status)"; FAILED=1; fi
    echo "| $name | $result | $((SECONDS - start)) | $name.log |" >> "$SUMMARY"
    echo "   $result, $((SECONDS - start)) s"
}

step environment "$PYTHON" -c '
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda)
print("cuda available", torch.cuda.is_available(), "GPUs", torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    print(i, torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i))
print("bf16 supported", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
'
step tests "$PYTHON" -m pytest "${TEST_PATHS[@]}" --device "$DEVICE" -m 'not slow' -q -p no:cacheprovider
step tools_train_test "$PYTHON" -m pytest tests/tools/test_tools_cli.py --device "$DEVICE" -k "$TOOLS_TESTS" -q -p no:cacheprovider
step benchmark "$PYTHON" tools/analysis_tools/benchmark_neck.py --device "$DEVICE" "${BENCH_ARGS[@]}" --out "$OUT/benchmark.json"
for amp in "${AMP_DTYPES[@]}"; do
    step "benchmark_$amp" "$PYTHON" tools/analysis_tools/benchmark_neck.py --device "$DEVICE" "${BENCH_ARGS[@]}" --amp "$amp" --skip-reference --out "$OUT/benchmark_$amp.json"
done
if [[ "$NUM_GPUS" -ge 2 ]]; then
    step dist_train_2gpu "$PYTHON" -m pytest tests/tools/test_tools_cli.py --device cuda -k test_dist_train_on_two_gpus -q -p no:cacheprovider
else
    echo "| dist_train_2gpu | skipped ($NUM_GPUS GPU(s)) | 0 | |" >> "$SUMMARY"
fi

{
    echo
    echo "## Benchmark figures"
    echo
    "$PYTHON" - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for path in sorted(out.glob('benchmark*.json')):
    r = json.loads(path.read_text())
    print(f"### {path.name}: batch {r['batch_size']}, amp {r['amp']}, {r['device']}")
    print()
    print('| neck | fwd+bwd ms | speed-up vs reference | time share / FLOP share |')
    print('|---|---|---|---|')
    for neck in ('HSRNNeck', 'HLSTMNeck'):
        e = r[neck]
        share = e['fwd_bwd_s'] / r['resnet50']['fwd_bwd_s'] / (e['fwd_bwd_flops'] / r['resnet50']['fwd_bwd_flops'])
        speedup = e.get('reference_fwd_bwd_s', float('nan')) / e['fwd_bwd_s']
        print(f"| {neck} | {1e3 * e['fwd_bwd_s']:.1f} | {speedup:.1f}x | {share:.2f} |")
    print()
PY
    echo "Tests: see the last line of tests.log and tools_train_test.log."
    tail -n 1 "$OUT/tests.log" "$OUT/tools_train_test.log" 2>/dev/null | sed 's/^/    /'
} >> "$SUMMARY"

echo "Summary: $SUMMARY"
exit "$FAILED"
