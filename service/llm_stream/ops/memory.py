"""Handing freed heap memory back to the operating system.

glibc's malloc keeps memory a process has freed for its next allocations: after a burst (a
gateway catching up on a long history, megabytes of fetched records decoded and let go), the
resident size keeps the burst's peak and its fragments, though nothing holds them. Where the
C library is glibc, ``malloc_trim`` returns what is free; elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)


def release_free_heap() -> bool:
    """Return free heap memory to the operating system; whether the C library could."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc: no malloc_trim
        return False
    trim.argtypes = [ctypes.c_size_t]
    return bool(trim(0))
