"""CPU memory: keep what a training step frees for the next step, instead of giving it back.

A training step allocates and frees the same large arrays every iteration: activations in
forward, gradients and temporaries in backward. glibc's malloc (Linux) hands arrays above its
*mmap threshold* straight to the OS when they are freed, and returns free memory at the top of
its heap above its *trim threshold*; by default both adapt to the sizes seen, but a step that
frees most of its memory at the end still gives it back. The next step then gets fresh pages
from the OS, and the first write to each 4 KB page is a page fault (the kernel maps and zeroes
it), paid again every step, and paid in turn when two threads fault at once. Measured on
ResNet-20 and ResNet-56 at batch 128 (benchmarks/README.md, "Round three"): 6-27 % of a step
at two threads, a few per cent at one.

``keep_freed_memory()`` raises both thresholds once, for the whole process (``mallopt``, through
``ctypes``: no dependency): arrays up to 32 MB (the most glibc allows) come from its heap, and
freed memory stays there for the next step. The price: the process keeps the memory of its
largest step until it ends, as PyTorch's caching allocator does on the GPU. The training
command calls it for CPU runs; elsewhere nothing changes unless you call it. Off glibc (macOS,
musl, Windows) it does nothing and returns False.
"""
import ctypes
import ctypes.util

# mallopt's parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # the largest glibc accepts on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # the largest int: never give the heap's free top back

_kept = None  # None: not tried yet; else whether the thresholds were set


def keep_freed_memory():
    """Keep freed memory in this process for reuse (glibc only; module docstring). Idempotent;
    returns True when glibc took both settings, False where there is no glibc."""
    global _kept
    if _kept is None:
        _kept = False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            return _kept
        if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):  # not glibc
            return _kept
        mallopt = libc.mallopt
        # the mmap threshold first: setting either one switches glibc's adaptive thresholds off
        _kept = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _kept
