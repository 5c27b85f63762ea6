"""The sweep's compiled CPU kernels: built from ``csrc/`` on first use, cached, loaded as ops.

``csrc/wavefront_scan_cpu.cpp`` registers ``torch.ops.chrnn_cpu.scan_forward`` and
``scan_backward``. They need a C++20 compiler (``$CXX``, default ``c++``) the first time
only: the shared library is built once per source, torch version and CPU capability into
``$CHRNN_KERNEL_CACHE`` (default ``~/.cache/chrnn_plugin/kernels``), under a file lock and
by atomic rename, so concurrent processes (``dist_train.sh``) build it once and a failed
build leaves nothing half-written. Where it cannot be built, :func:`available` is False and
the necks take the plain path.
"""

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name('csrc') / 'wavefront_scan_cpu.cpp'
CACHE_ENV_VAR = 'CHRNN_KERNEL_CACHE'
LIBRARY_NAME = 'chrnn_wavefront_cpu.so'


class KernelBuildError(RuntimeError):
    """The compiled CPU kernels could not be built or loaded."""


def _capability_flags() -> list[str]:
    # ATen's Vectorized picks its width from these macros: the kernels use the vector width
    # ATen's own kernels use on this CPU.
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == 'AVX512':
        return [
            *('-mavx512f', '-mavx512bw', '-mavx512vl', '-mavx512dq', '-mfma'),
            *('-DCPU_CAPABILITY=AVX512', '-DCPU_CAPABILITY_AVX512'),
        ]
    if capability == 'AVX2':
        return ['-mavx2', '-mfma', '-DCPU_CAPABILITY=AVX2', '-DCPU_CAPABILITY_AVX2']
    return ['-DCPU_CAPABILITY=DEFAULT']


def _compiler() -> str:
    """The C++ compiler the kernels are built with: ``$CXX``, else ``c++``."""
    return os.environ.get('CXX', 'c++')


def _compile_command(source: Path, target: Path) -> list[str]:
    # torch's own headers and libraries (what torch.utils.cpp_extension would use, without
    # importing it: its import looks for CUDA and warns on a CPU machine).
    root = Path(torch.__file__).parent
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    lib_dir = str(root / 'lib')
    return [
        _compiler(),
        '-O3',
        '-std=c++20',
        '-fPIC',
        '-shared',
        '-fopenmp',
        f'-D_GLIBCXX_USE_CXX11_ABI={abi}',
        *_capability_flags(),
        *('-isystem', str(root / 'include')),
        str(source),
        '-o',
        str(target),
        f'-L{lib_dir}',
        f'-Wl,-rpath,{lib_dir}',
        '-lc10',
        '-ltorch_cpu',
    ]


def cache_dir() -> Path:
    """The build cache: ``$CHRNN_KERNEL_CACHE``, else ``~/.cache/chrnn_plugin/kernels``."""
    root = os.environ.get(CACHE_ENV_VAR)
    return Path(root) if root else Path.home() / '.cache' / 'chrnn_plugin' / 'kernels'


def library_path() -> Path:
    """The library for this source, torch version and CPU capability (built or not)."""
    key = hashlib.sha256()
    key.update(SOURCE.read_bytes())
    key.update(' '.join(_compile_command(Path('src'), Path('lib'))).encode())
    key.update(torch.__version__.encode())
    return cache_dir() / key.hexdigest()[:16] / LIBRARY_NAME


def build(target: Path) -> None:
    """Compile the kernels into ``target`` atomically; :class:`KernelBuildError` if that fails."""
    compiler = _compiler()
    if shutil.which(compiler) is None:
        raise KernelBuildError(
            f'no C++ compiler: {compiler!r} is not on PATH (set $CXX, or CHRNN_WAVEFRONT=plain)'
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.parent / 'build.lock'):
        if target.exists():  # another process built it while we waited
            return
        print(
            f'chrnn_plugin: compiling the CPU sweep kernels into {target.parent} '
            '(once; about 10-30 s)',
            file=sys.stderr,
            flush=True,
        )
        handle, partial = tempfile.mkstemp(dir=target.parent, suffix='.so.partial')
        os.close(handle)
        try:
            result = subprocess.run(
                _compile_command(SOURCE, Path(partial)), capture_output=True, text=True
            )
            if result.returncode != 0:
                raise KernelBuildError(
                    f'compiling {SOURCE.name} failed ({compiler}, exit {result.returncode}):\n'
                    f'{result.stderr[-4000:]}'
                )
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(partial, 0o755 & ~umask)  # mkstemp's 0600, as any other built file
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.remove(partial)


@contextlib.contextmanager
def _exclusive(path: Path):
    """Hold an exclusive lock on ``path`` (POSIX ``flock``; where there is none, no lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: the build is then not guarded against a concurrent one
        yield
        return
    with open(path, 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@lru_cache(maxsize=1)
def load() -> Path:
    """Build the kernels if needed and load them; the library's path.

    Raises:
        KernelBuildError: with the compiler's message, when they cannot be built or loaded.
    """
    target = library_path()
    if not target.exists():
        try:
            build(target)
        except OSError as error:  # an unwritable cache, a full disk
            raise KernelBuildError(
                f'cannot build into {target.parent}: {error} (set ${CACHE_ENV_VAR})'
            ) from error
    try:
        torch.ops.load_library(str(target))
    except OSError as error:
        raise KernelBuildError(f'loading {target} failed: {error}') from error
    return target


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether the kernels are built and loaded (building them if needed); warns once if not."""
    try:
        load()
    except KernelBuildError as error:
        import warnings

        warnings.warn(
            f'chrnn_plugin: the compiled CPU sweep kernels are unavailable, so the necks take '
            f'the plain path: {error}',
            stacklevel=2,
        )
        return False
    return True
