"""CPU threads: one setting owns how many threads minires's NumPy ops use.

minires's own pool runs whole batch chunks of a conv (pad, im2col, matmul, col2im) on every core
at once, batch norm's channels (``for_each_row_block``) and the elementwise ops' memory
(``for_each_piece``) likewise: NumPy releases the GIL inside copies, ufuncs and BLAS calls, so
Python threads really run in parallel there. BLAS is held at one thread while the pool is in
charge, so that its busy-waiting workers never compete with ours (from the first parallel op, or
set_num_threads, on: a plain NumPy matmul elsewhere in the program then runs on one thread too).
Measured in benchmarks/README.md ("Round two" and "Round three").
"""
import concurrent.futures
import ctypes
import itertools
import os

import numpy as np

from .backend import memory_order

_num_threads = None  # None until set: get_num_threads() then reads the environment
_pool = None
_blas_limited = None  # None: not tried yet; else whether OpenBLAS's thread count could be set


def get_num_threads():
    """The number of CPU threads minires uses (``set_num_threads``; by default
    ``OMP_NUM_THREADS`` when set, else the CPUs this process may run on)."""
    if _num_threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        if env.isdigit() and int(env) > 0:
            return int(env)
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return _num_threads


def set_num_threads(n):
    """Use ``n`` CPU threads for minires's parallel ops (as ``torch.set_num_threads``).

    The NumPy convolution splits its batch over ``n`` worker threads, each running its chunks
    end to end with BLAS at one thread. To that end OpenBLAS (NumPy's BLAS) is set to one
    thread for the whole process, so a plain NumPy matmul elsewhere in the program runs on
    one thread too; other BLAS libraries are left as they are (``blas_threads_limited()``).
    CuPy (GPU) ops do not use these threads.
    """
    global _num_threads
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads = n  # parallel_map resizes its pool on its next call
    _limit_blas_to_one_thread()


def blas_threads_limited():
    """True when minires could hold OpenBLAS at one thread (found in this process and set)."""
    _limit_blas_to_one_thread()
    return _blas_limited


def _limit_blas_to_one_thread():
    """Set OpenBLAS to one thread through its C API (no dependency: ctypes on the library NumPy
    loaded). Best effort: with another BLAS, or off Linux, nothing is changed."""
    global _blas_limited
    if _blas_limited is not None:
        return
    _blas_limited = False
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        # the symbol's name depends on how OpenBLAS was built (NumPy's wheels: scipy_openblas64)
        for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                     "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
            setter = getattr(lib, name, None)
            if setter is not None:
                setter(1)
                _blas_limited = True
                break


def parallel_map(fn, items):
    """``[fn(item) for item in items]``, on ``get_num_threads()`` threads: this one and the pool's.

    For NumPy work that releases the GIL (copies, ufuncs, BLAS) on independent items, e.g.
    the batch chunks of a conv. Each thread takes the next item until none is left. The calling
    thread works too, where ``Executor.map`` would have it wait for a worker to wake: a 2-thread
    ResNet-20 or ResNet-56 step took 7 % less time (benchmarks/README.md, "Round three"). One
    thread, or one item, runs inline with no pool at all. An exception in any thread is raised
    here, after every thread has stopped.
    """
    global _pool
    items = list(items)
    n = min(get_num_threads(), len(items))
    if n <= 1:
        return [fn(item) for item in items]
    _limit_blas_to_one_thread()
    workers = get_num_threads() - 1  # the calling thread is the last one
    if _pool is None or _pool._max_workers != workers:  # first call, or the thread count changed
        if _pool is not None:
            _pool.shutdown()
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minires")
    results = [None] * len(items)
    counter = itertools.count()  # next() on it is atomic under the GIL: each index goes to one thread

    def work():
        i = next(counter)
        while i < len(items):
            results[i] = fn(items[i])
            i = next(counter)

    helpers = [_pool.submit(work) for _ in range(n - 1)]
    try:
        work()
    finally:
        for f in concurrent.futures.as_completed(helpers):
            f.result()
    return results


# Below this many bytes an op runs on one thread: each NumPy call holds the GIL for a microsecond
# or so, and on small arrays two threads mostly wait for each other. Measured here with np.add
# on 2 threads (each doing the work of 1): 64 KB arrays 1.05x, 256 KB 1.66x, 1 MB 1.87x.
MIN_SPLIT_BYTES = 2**18


def _splits(n, pieces, align=1):
    """At most ``pieces`` consecutive slices covering range(n), each a multiple of ``align`` long
    but the last; one empty slice when n is 0."""
    step = max(1, -(-n // (pieces * align)) * align)  # ceil(n / pieces), rounded up to a multiple of align
    return [slice(a, min(a + step, n)) for a in range(0, n, step)] or [slice(0, 0)]


def _threads_for(array):
    """How many threads an op on ``array`` should use: 1 for CuPy data and small arrays."""
    if not isinstance(array, np.ndarray) or array.nbytes < MIN_SPLIT_BYTES:
        return 1
    return get_num_threads()


def for_each_row_block(fn, rows):
    """``fn(block)`` for blocks (slices) of the first axis of ``rows``, on the worker threads.

    For per-row work (batch norm's channels): each thread takes one block of rows. One block,
    the whole array, on one thread, for small arrays and on CuPy data. Returns the results.
    """
    return parallel_map(fn, _splits(len(rows), _threads_for(rows)))


def _flat(array, order):
    """A 1-D view of ``array``'s memory with its axes in ``order`` (None if that is not possible)."""
    t = array.transpose(order)
    return t.reshape(-1) if t.flags.c_contiguous else None


def for_each_piece(fn, *arrays):
    """``fn(*pieces)`` for matching pieces of equally shaped arrays, on the worker threads.

    For elementwise work. When the arrays are NumPy arrays sharing one dense memory layout (as
    an op's output made by ``empty_like`` shares its input's), the pieces are 1-D views of
    that memory, one stretch per thread (one stretch in all for small arrays); otherwise, as
    on CuPy data, ``fn(*arrays)`` runs once on the arrays as they are. Returns the results.
    """
    first = arrays[0]
    if all(isinstance(a, np.ndarray) and a.shape == first.shape and a.strides == first.strides for a in arrays):
        order = memory_order(first)
        flats = [_flat(a, order) for a in arrays]
        if all(f is not None for f in flats):
            # pieces start at multiples of 16 elements (64 bytes for float32: one cache line)
            return parallel_map(lambda s: fn(*(f[s] for f in flats)), _splits(first.size, _threads_for(first), align=16))
    return [fn(*arrays)]
