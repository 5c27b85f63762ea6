"""What tools/demo.py prints, as a user reads it: in a pipe, in a terminal, in ``--help``.

Two tiny runs (module fixtures), one with stdout piped at 80 columns and one on
a pseudo-terminal, serve the end-to-end tests. They check that every printed
command is one line a shell can run, that progress streams in a pipe with rate
and time left, that the last progress value of each neck is the final val top-1
of the summary, and that the summary says what its time was measured on.
"""

import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO = REPO_ROOT / 'tools' / 'demo.py'
# 2 epochs of 2 steps: a second validation, so that a value one epoch stale
# would show; a progress line at every step.
TINY_RUN = ['--train-size', '64', '--val-size', '32', '--epochs', '2', '--progress-interval', '1']
# A space in the work dir: the printed command must quote it.
WORK_DIR = 'work dir'
ANSI_ESCAPE = re.compile(r'\x1b\[[0-9;?]*[A-Za-z]')
PROGRESS_LINE = re.compile(
    r'^(?P<label>\S+) +step (?P<done>\d+)/(?P<total>\d+)  (?P<rate>[\d.]+) (?:it/s|s/it)  '
    r'ETA (?P<eta>\d+:\d\d:\d\d)  epoch (?P<epoch>\d+)/(?P<epochs>\d+)'
)
VAL_TOP1 = re.compile(r'val top-1 ([\d.]+) ?%')
TABLE_ROW = re.compile(r'^\W*(?P<label>[\w-]+)\W+(?P<top1>[\d.]+) %')


@dataclass
class DemoRun:
    """One demo run: its directory, its stdout as lines, when each came, its results."""

    cwd: Path
    lines: list[str]
    # (seconds since start, whether the demo was still running) per line of a pipe
    arrivals: list[tuple[float, bool]]
    results: dict
    raw: str


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def demo():
    return _load(DEMO)


def _env(columns: int) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), COLUMNS=str(columns))
    # Either would make rich treat a pipe as a terminal.
    for name in ('FORCE_COLOR', 'TTY_COMPATIBLE'):
        env.pop(name, None)
    return env


def _results(cwd: Path) -> dict:
    return json.loads((cwd / WORK_DIR / 'results.json').read_text())


@pytest.fixture(scope='module')
def piped_run(tmp_path_factory) -> DemoRun:
    """The default necks, stdout a pipe read line by line as the demo writes it."""
    cwd = tmp_path_factory.mktemp('piped')
    with open(cwd / 'stderr.txt', 'w') as stderr:
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, str(DEMO), '--work-dir', WORK_DIR, *TINY_RUN],
            cwd=cwd,
            env=_env(80),
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        lines, arrivals = [], []
        for line in iter(process.stdout.readline, b''):
            arrivals.append((time.monotonic() - start, process.poll() is None))
            lines.append(line.decode().rstrip('\n'))
        process.stdout.close()
        assert process.wait() == 0, (cwd / 'stderr.txt').read_text()
    return DemoRun(cwd, lines, arrivals, _results(cwd), '\n'.join(lines))


@pytest.fixture(scope='module')
def terminal_run(tmp_path_factory) -> DemoRun:
    """Two necks with stdout a pseudo-terminal, wide enough to read the bars."""
    pty = pytest.importorskip('pty')
    cwd = tmp_path_factory.mktemp('terminal')
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, str(DEMO), '--work-dir', WORK_DIR, '--necks', 'gap', 'hsrn', *TINY_RUN],
        cwd=cwd,
        env=_env(200),
        stdout=slave,
        stderr=subprocess.DEVNULL,
    )
    os.close(slave)
    chunks = []
    while True:  # read as it comes, or the demo blocks on a full terminal buffer
        try:
            chunk = os.read(master, 65536)
        except OSError:  # Linux: EIO once the demo has closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert process.wait() == 0
    raw = b''.join(chunks).decode()
    # Each redraw of the bars starts at \r; what remains is what the screen showed.
    lines = [part.rstrip() for part in re.split(r'[\r\n]+', ANSI_ESCAPE.sub('', raw))]
    return DemoRun(cwd, lines, [], _results(cwd), raw)


def _commands(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if line.strip().startswith('python ')]


def _check_command(command: str, cwd: Path) -> list[str]:
    """``command`` as a shell splits it; its script exists and parses its arguments."""
    words = shlex.split(command)
    assert words[0] == 'python', command
    script = cwd / words[1]
    assert script.is_file() and script.parent == REPO_ROOT / 'tools', command
    _load(script).parse_args(words[2:])  # exits (SystemExit) on a flag it does not know
    for word in words[2:]:
        if word.endswith(('.py', '.pth')):
            assert (cwd / word).is_file(), (word, command)
        elif word.endswith('.png'):  # an output: its folder must exist
            assert (cwd / word).parent.is_dir(), (word, command)
    return words


@pytest.mark.slow
@pytest.mark.parametrize('run_name', ['piped_run', 'terminal_run'])
def test_every_printed_command_is_one_line_a_shell_can_run(request, run_name):
    run: DemoRun = request.getfixturevalue(run_name)
    commands = _commands(run.lines)
    assert commands, run.raw
    # A command broken over lines would leave a piece that names a tool elsewhere.
    for line in run.lines:
        if 'tools/' in line or '.pth' in line:
            assert line.strip() in commands, line
    for command in commands:
        words = _check_command(command, run.cwd)
        # The whole command: HSRN beside GAP, with the checkpoints they ended on.
        checkpoints = {str((run.cwd / w).resolve()) for w in words if w.endswith('.pth')}
        assert checkpoints == {run.results[n]['checkpoint'] for n in ('hsrn', 'gap')}, command


def test_help_examples_are_one_line_commands_and_promise_no_duration(demo, capsys, monkeypatch):
    monkeypatch.setenv('COLUMNS', '40')  # argparse wraps to this; the examples must not
    with pytest.raises(SystemExit):
        demo.parse_args(['--help'])
    help_text = capsys.readouterr().out
    commands = _commands(help_text.splitlines())
    assert len(commands) >= 3, help_text
    for command in commands:
        words = shlex.split(command)
        assert words[:2] == ['python', 'tools/demo.py'], command
        assert (REPO_ROOT / words[1]).is_file()
        demo.parse_args(words[2:])
    assert 'minute' not in help_text
    assert '--progress-interval' in help_text
    assert f'about every {demo.PROGRESS_SECONDS:.0f} s' in demo.__doc__


def _progress(lines: list[str]) -> list[re.Match]:
    return [m for m in map(PROGRESS_LINE.match, lines) if m]


@pytest.mark.slow
def test_progress_lines_stream_through_a_pipe_in_order_with_rate_and_eta(piped_run, demo):
    run = piped_run
    # No live bars (cursor moves, colours) in a pipe: plain lines only.
    assert '\x1b[' not in run.raw and '\r' not in run.raw
    progress = _progress(run.lines)
    labels = [demo.NECKS[neck] for neck in run.results]
    assert list(dict.fromkeys(m['label'] for m in progress)) == labels
    for label in labels:
        mine = [m for m in progress if m['label'] == label]
        done = [int(m['done']) for m in mine]
        total = int(mine[0]['total'])
        assert total == 4  # 64 images / batch 32, 2 epochs
        # --progress-interval 1: every step, in order, plus one line per validation.
        assert sorted(done) == done and set(done) == set(range(1, total + 1)), done
        assert all(float(m['rate']) > 0 for m in mine)
        assert mine[-1]['eta'] == '0:00:00' and mine[-1]['epoch'] == mine[-1]['epochs'] == '2'
    # Live, not at exit: the first line came while the demo still ran, well
    # before its last one (a buffered pipe gets everything at once at the end).
    indices = [i for i, line in enumerate(run.lines) if PROGRESS_LINE.match(line)]
    first_time, running = run.arrivals[indices[0]]
    assert running
    assert run.arrivals[indices[-1]][0] - first_time > 0.2, run.arrivals


def _table(lines: list[str], labels: list[str]) -> dict[str, float]:
    rows = [m for m in map(TABLE_ROW.match, lines) if m and m['label'] in labels]
    return {m['label']: float(m['top1']) for m in rows}


def _without_repeats(values: list[float]) -> list[float]:
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


@pytest.mark.slow
@pytest.mark.parametrize('run_name', ['piped_run', 'terminal_run'])
def test_last_progress_value_is_the_final_val_top1_of_the_summary(request, demo, run_name):
    run: DemoRun = request.getfixturevalue(run_name)
    labels = {demo.NECKS[neck]: neck for neck in run.results}
    table = _table(run.lines, list(labels))
    assert set(table) == set(labels), run.raw
    for label, neck in labels.items():
        curve = [round(v, 1) for v in run.results[neck]['val_top1']]
        shown = [
            float(VAL_TOP1.search(line)[1])
            for line in run.lines
            if line.startswith(label + ' ') and VAL_TOP1.search(line)
        ]
        assert shown[-1] == table[label] == curve[-1], (label, shown, table, curve)
        if run_name == 'piped_run':
            # Each validation's value, in order, as soon as it ends.
            assert _without_repeats(shown) == _without_repeats(curve), (label, shown, curve)


@pytest.mark.slow
def test_a_terminal_gets_live_bars(terminal_run):
    assert '\x1b[2K' in terminal_run.raw  # rich erasing and redrawing its bars
    assert not _progress(terminal_run.lines)


@pytest.mark.slow
def test_summary_states_the_run_time_threads_and_cpus(piped_run):
    text = ' '.join(piped_run.raw.split())  # prose may wrap at 80 columns
    match = re.search(r'Whole demo: (\d+) s with (\d+) torch threads? on (\d+) CPUs', text)
    assert match, text
    seconds, threads = int(match[1]), int(match[2])
    assert int(match[3]) == os.cpu_count()
    for result in piped_run.results.values():
        assert result['threads'] == threads
    # The whole run includes every neck's training and validation.
    assert seconds >= round(sum(r['seconds'] for r in piped_run.results.values())) - 1


def test_default_progress_line_comes_every_15_seconds_with_rate_and_time_left(demo, monkeypatch):
    """Without --progress-interval: a line after the first step 15 s after the last line."""
    clock = [0.0]
    monkeypatch.setattr(demo.time, 'perf_counter', lambda: clock[0])
    out = io.StringIO()
    console = demo.Console(file=out, force_terminal=False, width=80)
    progress = demo.Progress(console=console, disable=True)
    hook = demo.DemoProgressHook(progress, 'HSRN')
    runner = SimpleNamespace(iter=0, epoch=0, max_iters=100, max_epochs=1)
    hook.before_train(runner)
    for step in range(40):  # one step a second
        hook.before_train_iter(runner, step)
        clock[0] += 1.0
        hook.after_train_iter(runner, step, outputs={'loss': torch.tensor(1.25)})
        runner.iter += 1
    lines = out.getvalue().splitlines()
    assert lines[0] == 'HSRN      100 training steps, 1 epoch'
    assert lines[1:] == [
        'HSRN      step 15/100  1.0 it/s  ETA 0:01:25  epoch 1/1  loss 1.250',
        'HSRN      step 30/100  1.0 it/s  ETA 0:01:10  epoch 1/1  loss 1.250',
    ]
    assert demo.format_rate(0.25) == '4.0 s/it'
