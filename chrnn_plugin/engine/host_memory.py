"""Keep freed CPU memory in the process, so that a fresh tensor costs no page faults.

PyTorch's CPU allocator takes every buffer from ``malloc`` and gives it back
at once. glibc serves a large request with a fresh ``mmap`` and returns it to
the operating system on ``free``, so the next buffer of that size is new
memory again, and its first touch page-faults. With PyTorch's huge-page
allocation (``THP_MEM_ALLOC_ENABLE=1``) a fresh 12.8 MB matrix product took
10-14 ms on our 2-core machine instead of 3-4 ms (582 page faults per product),
and the 112 px demo's main process took 1.1-1.2 M page faults.
:func:`keep_freed_memory` tells glibc to serve every request from its heap and
never to shrink it, so freed buffers are reused (0 faults per product, 0.21 M
in that demo); the tools call it at start. The price is a resident size at the
high-water mark (that demo: 2.4-2.8 GB instead of 2.1 GB).
"""

import ctypes
import ctypes.util
import os
import sys

#: ``0`` turns :func:`keep_freed_memory` off (the tools then leave malloc as it is).
KEEP_ENV_VAR = 'CHRNN_KEEP_FREED_MEMORY'
# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
# Free memory at the heap's top before glibc trims it: mallopt's largest (an int), in
# effect never.
_NEVER_TRIM = 2**31 - 1


def keep_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse: heap only, never trimmed.

    Returns:
        bool: whether it took effect: False off Linux, with a C library
        other than glibc, or with ``$CHRNN_KEEP_FREED_MEMORY=0``.
    """
    if os.environ.get(KEEP_ENV_VAR) == '0' or not sys.platform.startswith('linux'):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    except OSError:
        return False
    if not hasattr(libc, 'gnu_get_libc_version'):  # not glibc: musl's mallopt does nothing
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # No mmap for any request (mmapped chunks go back to the system on free), no trimming.
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
