"""Backends: which array module (NumPy or CuPy) holds a tensor's data.

minires never hard-codes ``numpy`` inside an op. The module is read off the data
(``xp = get_array_module(x)``, as DeZero and Chainer do), so the same op code runs on
the CPU with NumPy and on the GPU with CuPy. CuPy is optional and imported lazily.
"""
import concurrent.futures
import ctypes
import functools
import os

import numpy as np

DEVICES = ("cpu", "gpu")


@functools.lru_cache(maxsize=None)
def _cupy():
    """The cupy module, or None when it cannot be imported."""
    try:
        import cupy
    except Exception:  # ImportError, or a broken CUDA install raising at import
        return None
    return cupy


@functools.lru_cache(maxsize=None)
def gpu_available():
    """True only when CuPy imports *and* a CUDA device answers.

    On a machine without a GPU ``import cupy`` can succeed while every allocation
    raises, so we allocate, compute and copy back one small array to be sure.
    """
    cp = _cupy()
    if cp is None:
        return False
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            return False
        return float((cp.arange(3, dtype=cp.float32) * 2).sum().get()) == 6.0
    except Exception:
        return False


def get_array_module(*arrays):
    """numpy, or cupy when any argument is a CuPy array (None and scalars are ignored)."""
    cp = _cupy()
    if cp is not None:
        for a in arrays:
            if isinstance(a, cp.ndarray):
                return cp
    return np


def device_of(array):
    """'gpu' for a CuPy array, 'cpu' otherwise."""
    return "cpu" if isinstance(array, np.ndarray) or get_array_module(array) is np else "gpu"


def check_device(device):
    """Validate a device name and return it ('cpu' or 'gpu'; 'cuda' is accepted as 'gpu')."""
    if device == "cuda":
        device = "gpu"
    if device not in DEVICES:
        raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
    if device == "gpu" and not gpu_available():
        raise RuntimeError(
            "device 'gpu' requested but no GPU is usable: CuPy is not installed or no CUDA "
            "device answers (pip install 'minires[gpu]' on a machine with an NVIDIA GPU)"
        )
    return device


def to_device(array, device):
    """Return ``array`` on ``device`` ('cpu' or 'gpu'); no copy when it is already there."""
    device = check_device(device)
    if device == "cpu":
        return array.get() if device_of(array) == "gpu" else np.asarray(array)
    return _cupy().asarray(array)


def to_numpy(array):
    """A NumPy array holding the values of ``array`` (copied from the GPU when needed)."""
    return array.get() if device_of(array) == "gpu" else np.asarray(array)


def synchronize(device="gpu"):
    """Wait until the GPU has finished all queued work (no-op on the CPU).

    CuPy launches kernels asynchronously: time GPU code with a synchronize before reading
    the clock, or the time is only that of the launches.
    """
    if check_device(device) == "gpu":
        _cupy().cuda.Stream.null.synchronize()


def is_capturing(xp):
    """True while the current CuPy stream records a CUDA graph (``minires.cuda_graph``).

    Ops skip their checks that read values back to the host (a synchronisation, which a
    capturing stream refuses); the capturing code checks those inputs itself."""
    return xp is not np and xp.cuda.get_current_stream().is_capturing()


# ----------------------------------------------------------------------------- CPU threads
#
# One setting owns the CPU thread count. minires's own pool runs whole batch chunks of a conv
# (pad, im2col, matmul, col2im) on every core at once: NumPy releases the GIL inside copies,
# ufuncs and BLAS calls, so Python threads really run in parallel there. BLAS is held at one
# thread while the pool is in charge, so that its busy-waiting workers never compete with ours
# (from the first parallel op, or set_num_threads, on: a plain NumPy matmul elsewhere in the
# program then runs on one thread too). Measured in benchmarks/README.md ("Round two").

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
    global _num_threads, _pool
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    _num_threads = n
    if _pool is not None and _pool._max_workers != n:
        _pool.shutdown()
        _pool = None
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
    """``[fn(item) for item in items]``, on ``get_num_threads()`` worker threads.

    For NumPy work that releases the GIL (copies, ufuncs, BLAS) on independent items, e.g.
    the batch chunks of a conv. One thread, or one item, runs inline with no pool at all.
    """
    global _pool
    items = list(items)
    n = get_num_threads()
    if n == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    _limit_blas_to_one_thread()
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(max_workers=n, thread_name_prefix="minires")
    return list(_pool.map(fn, items))
