"""Keep a long command's memory near what it holds: freed image-sized arrays go back to the system.

glibc's allocator serves blocks below its mmap threshold from the heap, and raises that
threshold (up to 32 MB) each time a larger block is freed. Applying a model to an image
allocates and frees many band-sized arrays of 1–40 MB (tiles, model outputs, residual blocks,
window sums), so after the first of them they come from the heap, which then keeps their
pages and every later stage's peak sits on top of them. A fixed threshold of
:data:`MMAP_THRESHOLD` gives the larger ones their own mapping, returned when freed.

Measured on one 1024² × 40 image through ``qc`` (2 shared CPU cores, peak RSS / wall):
glibc's default 1.27–1.37 GB / 17–19 s; threshold 16 MB 1.24–1.26 GB / 19.5–20.5 s; 8 MB 1.12 GB /
25–26 s; 1 MB 1.12 GB / 29–30 s (a fresh mapping is faulted in page by page on every use, and
the noise fit and window sums allocate many 1–8 MB temporaries).

Only the command line calls :func:`return_large_blocks`, once, before its work: it changes the
whole process's allocator, which a library function must not do behind its caller's back.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["MMAP_THRESHOLD", "return_large_blocks"]

#: Bytes from which a block gets its own mapping (and goes back to the system when freed): below
#: it the page faults of fresh mappings cost more time than the memory is worth (see above).
MMAP_THRESHOLD = 16 << 20
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
