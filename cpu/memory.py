"""Process memory on CPU: glibc keeps freed heap blocks mapped, and the holes that tensors of many sizes
leave between live ones add up to the process's peak resident set (measured: docs/performance.md)."""
import ctypes
import ctypes.util
import functools


@functools.lru_cache(maxsize=None)
def _malloc_trim():
    name = ctypes.util.find_library('c')
    try:
        trim = ctypes.CDLL(name).malloc_trim  # glibc only
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_heap():
    """Hand the free pages inside glibc's heap back to the kernel (malloc_trim(0)). Returns False where the
    C library has no malloc_trim (macOS, musl): nothing is done there."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
