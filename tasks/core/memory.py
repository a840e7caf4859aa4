"""Process memory settings for the data path.

Archives and restores move bytes through a few dozen threads (reads ahead, compression,
part uploads). glibc gives every thread that allocates its own malloc arena, up to
8 per core, and MiB-sized buffers freed in one arena are not reused by another, so the
resident size of a long archive keeps creeping up although the bytes in flight stay
bounded. Two arenas keep it flat at no measured cost in speed (bench/archive_bench.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: mallopt's parameter number for the arena limit (glibc malloc.h).
M_ARENA_MAX = -8
#: Arenas the data path's threads share, unless MALLOC_ARENA_MAX says otherwise.
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads started from now on; True if it was applied.

    A ``MALLOC_ARENA_MAX`` in the environment is the operator's choice and is left alone;
    on other C libraries this does nothing.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))
