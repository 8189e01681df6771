"""Keep a long command's memory near what it holds: freed image-sized arrays go back to the system.

glibc's allocator serves blocks below its mmap threshold from the heap, and raises that
threshold (up to 32 MB) each time a larger block is freed. Applying a model to an image
allocates and frees many band-sized arrays of 1–40 MB (tiles, residual blocks, window sums),
so after the first of them they come from the heap, which then keeps their pages: measured on
one 1024² × 40 image through ``qc`` (``bench/bench_qc.py``), ~240 MB of freed memory stayed
resident and every later stage's peak sat on top of it. A fixed threshold of
:data:`MMAP_THRESHOLD` gives each such array its own mapping, returned when freed.

Only the command line calls :func:`return_large_blocks`, once, before its work: it changes the
whole process's allocator, which a library function must not do behind its caller's back.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["MMAP_THRESHOLD", "return_large_blocks"]

#: Bytes from which a block gets its own mapping (and goes back to the system when freed).
MMAP_THRESHOLD = 1 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def return_large_blocks(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; True when it was set.

    Nothing happens (False) where the C library is not glibc (macOS, Windows, musl).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ValueError(f"threshold must be an int >= 1 (bytes), got {threshold!r}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, threshold) == 1
