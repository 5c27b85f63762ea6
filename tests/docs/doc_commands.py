"""Read the shell commands and code blocks out of the docs pages.

A fenced block preceded by the MyST comment line ``% cpu-test`` is *marked*:
the tests run it on a CPU. Every other ``python tools/...`` or
``bash tools/...`` command in a ``bash`` block is only checked: its tool
exists, its arguments parse, and the configs it names exist.
"""

import itertools
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / 'docs'
MARKER = '% cpu-test'
SHELL_LANGS = ('bash', 'sh', 'shell')

_FENCE_OPEN = re.compile(r'^(`{3,})([^`\s]*)\s*$')
_ENV_ASSIGNMENT = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*=')
_FOR_LOOP = re.compile(r'^\s*for (\w+) in ([^;]+); do\s*$')
_VAR = re.compile(r'\$\{(\w+)\}|\$(\w+)')


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marked: bool

    @property
    def where(self) -> str:
        return f'{self.page.relative_to(REPO_ROOT)}:{self.line}'


def pages() -> list[Path]:
    """Every Markdown page of the site."""
    return sorted(p for p in DOCS.rglob('*.md') if '_build' not in p.parts)


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page (directives such as ```{note} excluded)."""
    found = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE_OPEN.match(lines[index])
        if not match:
            index += 1
            continue
        fence, lang = match.groups()
        start = index
        index += 1
        body = []
        while index < len(lines) and lines[index].rstrip() != fence:
            body.append(lines[index])
            index += 1
        index += 1  # the closing fence
        previous = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), '')
        if lang.startswith('{'):
            continue
        found.append(Block(page, start + 1, lang, '\n'.join(body) + '\n', previous == MARKER))
    return found


def shell_commands(block: Block) -> list[str]:
    """The block's commands: continuations joined, comments dropped, loops expanded."""
    joined = block.text.replace('\\\n', ' ')
    loop_values: dict[str, list[str]] = {}
    commands = []
    for raw in joined.splitlines():
        line = raw.split(' #')[0].strip() if not raw.lstrip().startswith('#') else ''
        loop = _FOR_LOOP.match(line)
        if loop:
            loop_values[loop.group(1)] = loop.group(2).split()
            continue
        if not line or line in ('done', 'do'):
            continue
        commands.extend(_expand(line, loop_values))
    return commands


def _expand(line: str, loop_values: dict[str, list[str]]) -> list[str]:
    names = [n for n in dict.fromkeys(a or b for a, b in _VAR.findall(line)) if n in loop_values]
    if not names:
        return [line]
    expanded = []
    for values in itertools.product(*(loop_values[n] for n in names)):
        text = line
        for name, value in zip(names, values):
            text = text.replace('${' + name + '}', value)
            text = re.sub(r'\$' + name + r'\b', value, text)
        expanded.append(text)
    return expanded


@dataclass
class ToolCall:
    """A ``python tools/X.py ...`` or ``bash tools/X.sh ...`` command."""

    where: str
    command: str
    program: str  # 'python' or 'bash'
    tool: str  # path relative to the repo, e.g. tools/train.py
    args: list[str]


def tool_calls(block: Block) -> list[ToolCall]:
    calls = []
    for command in shell_commands(block):
        tokens = shlex.split(command)
        while tokens and _ENV_ASSIGNMENT.match(tokens[0]):
            tokens.pop(0)
        if len(tokens) >= 2 and tokens[0] in ('python', 'bash') and tokens[1].startswith('tools/'):
            calls.append(ToolCall(block.where, command, tokens[0], tokens[1], tokens[2:]))
    return calls


def python_tool_argv(call: ToolCall) -> tuple[str, list[str]]:
    """The Python tool a command ends up in, and the arguments it receives.

    The launch scripts pass their own positional arguments on to
    ``tools/train.py`` or ``tools/test.py`` (see their usage lines).
    """
    args = call.args
    name = Path(call.tool).name
    if call.program == 'python':
        return call.tool, args
    if name == 'dist_train.sh':
        int(args[1])  # NPROC_PER_NODE
        return 'tools/train.py', [args[0], *args[2:]]
    if name == 'dist_test.sh':
        int(args[2])
        return 'tools/test.py', [args[0], args[1], *args[3:]]
    if name == 'slurm_train.sh':
        return 'tools/train.py', [args[2], '--work-dir', args[3], *args[4:]]
    if name == 'slurm_test.sh':
        return 'tools/test.py', [args[2], args[3], *args[4:]]
    raise AssertionError(f'{call.where}: no rule for the arguments of {call.tool}')


def config_paths(args: list[str]) -> list[str]:
    return [a for a in args if a.startswith('configs/') and a.endswith('.py')]
