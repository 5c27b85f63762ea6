#!/usr/bin/env bash
# One prepared check of the GPU paths, some minutes on one GPU.
#
#   tools/analysis_tools/gpu_check.sh [--device cuda|cpu] [--out DIR]
#
# Runs, each step logged to DIR/<step>.log and summarised in DIR/summary.md:
#   1. the environment (torch, CUDA, GPUs);
#   2. the tensor tests on the device (pytest --device DEVICE -m "not slow");
#   3. a short train and test through tools/train.py and tools/test.py;
#   4. benchmark_neck.py on the device, every sweep path that applies in
#      each run, at both presets (c4c5: ResNet-50's C4+C5 maps; demo: the demo's
#      64x14x14 map) and in fp32, bf16 and fp16 autocast (the reference loop in
#      the c4c5 fp32 run on CUDA only); on CUDA it also counts the kernels each
#      forward+backward launches (torch.profiler), shown in the summary;
#   5. with two or more GPUs, a 2-process dist_train.sh smoke run.
# --device cpu is a quick dry run of the same steps on a small subset (CI runs
# it): the benchmark at the demo preset only, batch 2, one repeat, fp32 and
# bf16, no reference loop, the timing targets reported as not checked (kernel
# counts: 'not measured on CPU'). A step is PASS only
# when its figures pass: pytest exited 0 and at least one test passed (for the
# train/test and dist steps, none skipped); the benchmark exited 0 and its JSON
# from this run meets every target it checks. Exits non-zero if any step
# failed; the summary says which and why.
set -uo pipefail

DEVICE=cuda
OUT=work_dirs/gpu_check
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) DEVICE="${2:?--device needs cuda or cpu}"; shift 2 ;;
        --out) OUT="${2:?--out needs a directory}"; shift 2 ;;
        -h|--help) sed -n '2,/^[^#]/{/^#/p}' "$0"; exit 0 ;;
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
    BENCH_ARGS=()
    BENCH_PRESETS=(c4c5 demo)
    AMP_DTYPES=(none bf16 fp16)
    # The one run (preset amp) that also times the per-region reference loop.
    REFERENCE_RUN='c4c5 none'
else
    NUM_GPUS=0
    export CUDA_VISIBLE_DEVICES=
    # Dry run: a small subset that still goes through every step.
    TEST_PATHS=(tests/necks/test_neck_behaviour.py)
    TOOLS_TESTS='test_train_two_epochs'
    # The timing targets are not meant for these sizes; the op-count and memory targets are checked.
    BENCH_ARGS=(--batch-size 2 --repeats 1 --skip-time-targets)
    BENCH_PRESETS=(demo)
    AMP_DTYPES=(none bf16)
    # The reference loop's profiled peak memory takes a minute at 14x14 on a CPU.
    REFERENCE_RUN=''
fi

{
    echo "# GPU check ($DEVICE)"
    echo
    echo "Started $(date -u '+%Y-%m-%d %H:%M:%S UTC') in $REPO at commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)."
    echo
    echo "| step | result | seconds | log |"
    echo "|---|---|---|---|"
} > "$SUMMARY"

# run NAME COMMAND...: run it in the repo, its output to $OUT/NAME.log; sets STATUS.
run() {
    local name="$1"; shift
    echo "== $name: $*"
    STEP_START=$SECONDS
    (cd "$REPO" && "$@") > "$OUT/$name.log" 2>&1
    STATUS=$?
}

# record NAME RESULT: one summary row. Any RESULT but PASS... or skipped... fails the check.
record() {
    local name="$1" result="$2" log="$1.log"
    if [[ "$result" != PASS* && "$result" != skipped* ]]; then FAILED=1; fi
    [[ "$result" == skipped* ]] && log=""
    echo "| $name | $result | $((SECONDS - STEP_START)) | $log |" >> "$SUMMARY"
    echo "   $result, $((SECONDS - STEP_START)) s"
}

# exit_verdict: PASS if the step's command exited 0.
exit_verdict() {
    if [[ $STATUS -ne 0 ]]; then echo "FAIL (exit $STATUS)"; else echo PASS; fi
}

# pytest_verdict LOG [no-skips]: PASS if pytest exited 0 and at least one test
# passed (with no-skips: and none was skipped, as a skipped test did not run).
pytest_verdict() {
    local log="$1" mode="${2:-}" line passed skipped
    line="$(grep -E '[0-9]+ (passed|failed|skipped|errors?|deselected)|no tests ran' "$log" | tail -n 1 \
        | sed -E 's/^=+ //; s/ in [0-9.]+s.*$//')"
    passed="$(grep -oE '[0-9]+ passed' <<< "$line" | grep -oE '^[0-9]+')"
    skipped="$(grep -oE '[0-9]+ skipped' <<< "$line" | grep -oE '^[0-9]+')"
    if [[ $STATUS -ne 0 ]]; then
        echo "FAIL (exit $STATUS${line:+: $line})"
    elif [[ "${passed:-0}" -eq 0 ]]; then
        echo "FAIL (no test passed${line:+: $line})"
    elif [[ "$mode" == no-skips && "${skipped:-0}" -ne 0 ]]; then
        echo "FAIL ($line: a skipped test did not run)"
    else
        echo "PASS ($line)"
    fi
}

# benchmark_verdict JSON: PASS if benchmark_neck.py exited 0 and the figures it
# wrote to JSON in this run meet every target they check.
benchmark_verdict() {
    "$PYTHON" - "$1" "$STATUS" <<'PY'
import json, sys
path, status = sys.argv[1], int(sys.argv[2])
try:
    with open(path) as f:
        checks = json.load(f)['checks']
except (OSError, ValueError, KeyError, TypeError) as error:
    checks, why = None, f'no figures in {path.rsplit("/", 1)[-1]}: {type(error).__name__}'
if checks is not None:
    failed = sum(c.get('passed') is False for c in checks)
    unchecked = sum(c.get('passed') is None for c in checks)
    met = len(checks) - failed - unchecked
    why = f'targets: {met} met' + (f', {failed} failed' if failed else '')
    why += f', {unchecked} not checked' if unchecked else ''
if status != 0:
    print(f'FAIL (exit {status}; {why})')
elif checks is None or failed or not met:
    print(f'FAIL ({why})')
else:
    print(f'PASS ({why})')
PY
}

run environment "$PYTHON" -c '
import sys
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda)
print("cuda available", torch.cuda.is_available(), "GPUs", torch.cuda.device_count())
for i in range(torch.cuda.device_count()):
    print(i, torch.cuda.get_device_name(i), torch.cuda.get_device_capability(i))
print("bf16 supported", torch.cuda.is_available() and torch.cuda.is_bf16_supported())
if sys.argv[1] == "cuda" and torch.cuda.device_count() < 1:
    sys.exit("--device cuda but no GPU is visible")
' "$DEVICE"
record environment "$(exit_verdict)"
run tests "$PYTHON" -m pytest "${TEST_PATHS[@]}" --device "$DEVICE" -m 'not slow' -q -p no:cacheprovider
record tests "$(pytest_verdict "$OUT/tests.log")"
run tools_train_test "$PYTHON" -m pytest tests/tools/test_tools_cli.py --device "$DEVICE" -k "$TOOLS_TESTS" -q -p no:cacheprovider
record tools_train_test "$(pytest_verdict "$OUT/tools_train_test.log" no-skips)"
# A figure file left by an earlier run must not stand in for this run's.
rm -f "$OUT"/benchmark*.json
# One step per preset and autocast dtype, each timing every path that applies
# in one process; the reference loop (slow) only in REFERENCE_RUN.
for preset in "${BENCH_PRESETS[@]}"; do
    for amp in "${AMP_DTYPES[@]}"; do
        name="benchmark_$preset"; [[ "$amp" != none ]] && name+="_$amp"
        extra=(--skip-reference)
        [[ "$preset $amp" == "$REFERENCE_RUN" ]] && extra=()
        run "$name" "$PYTHON" tools/analysis_tools/benchmark_neck.py --device "$DEVICE" --preset "$preset" \
            "${BENCH_ARGS[@]}" --amp "$amp" "${extra[@]}" --out "$OUT/$name.json"
        record "$name" "$(benchmark_verdict "$OUT/$name.json")"
    done
done
if [[ "$NUM_GPUS" -ge 2 ]]; then
    run dist_train_2gpu "$PYTHON" -m pytest tests/tools/test_tools_cli.py --device cuda -k test_dist_train_on_two_gpus -q -p no:cacheprovider
    record dist_train_2gpu "$(pytest_verdict "$OUT/dist_train_2gpu.log" no-skips)"
else
    STEP_START=$SECONDS
    record dist_train_2gpu "skipped ($NUM_GPUS GPU(s))"
fi

{
    echo
    echo "## Benchmark figures"
    echo
    "$PYTHON" - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])


def cell(entry, fmt):
    """A figure, or 'not run' where the run did not measure it."""
    try:
        return fmt(entry)
    except (KeyError, TypeError, ZeroDivisionError):
        return 'not run'


for path in sorted(out.glob('benchmark*.json')):
    try:
        r = json.loads(path.read_text())
        title = f"preset {r['preset']}, batch {r['batch_size']}, amp {r['amp']}, {r['device']}"
    except (ValueError, KeyError, TypeError) as error:
        print(f'### {path.name}: unreadable ({type(error).__name__})')
        print()
        continue
    print(f'### {path.name}: {title}')
    print()
    print('| neck | path | fwd+bwd ms | fwd+bwd peak MiB | speed-up vs reference '
          '| time share / FLOP share | share of GEMM speed | CUDA kernels fwd+bwd |')
    print('|---|---|---|---|---|---|---|---|')
    resnet = r.get('resnet50')
    on_cpu = str(r['device']).startswith('cpu')
    rows = [(neck, p) for neck in ('HSRNNeck', 'HLSTMNeck') for p in r.get('paths') or []]
    for neck, p in [*rows, ('RegionSelfAttentionNeck', '-')]:
        e = r.get(neck if p == '-' else f'{neck} {p}', {})
        hrnn = p != '-'
        row = [
            cell(e, lambda e: f"{1e3 * e['fwd_bwd_s']:.1f}"),
            cell(e, lambda e: f"{e['fwd_bwd_peak_bytes'] / 2**20:.1f}"),
            cell(e, lambda e: f"{e['reference_fwd_bwd_s'] / e['fwd_bwd_s']:.1f}x") if hrnn else '-',
            'no ResNet-50' if resnet is None else cell(e, lambda e: f"{e['fwd_bwd_s'] / resnet['fwd_bwd_s'] / (e['fwd_bwd_flops'] / resnet['fwd_bwd_flops']):.2f}"),
            cell(e, lambda e: f"{e['gemm_speed_share']:.3f}"),
            '-' if not hrnn else 'not measured on CPU' if on_cpu else cell(e, lambda e: str(e['fwd_bwd_kernels'])),
        ]
        print(f"| {neck} | {p} | {' | '.join(row)} |")
    print()
PY
    echo "Tests: see the last line of tests.log and tools_train_test.log."
    tail -n 1 "$OUT/tests.log" "$OUT/tools_train_test.log" 2>/dev/null | sed 's/^/    /'
} >> "$SUMMARY"

echo "Summary: $SUMMARY"
exit "$FAILED"
