"""Backends: which array module (NumPy or CuPy) holds a tensor's data.

minires never hard-codes ``numpy`` inside an op. The module is read off the data
(``xp = get_array_module(x)``, as DeZero and Chainer do), so the same op code runs on
the CPU with NumPy and on the GPU with CuPy. CuPy is optional and imported lazily.
"""
import functools

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


def memory_order(array):
    """``array``'s axes from the slowest-varying in memory to the fastest: (1, 0, 2, 3) for an
    NCHW view of channel-major memory, as the reference conv's outputs are; (0, 2, 3, 1) for
    channels-last memory, as the CPU conv kernels' are."""
    return tuple(sorted(range(array.ndim), key=lambda axis: -abs(array.strides[axis])))


def zeros_in_order(shape, order, dtype, xp=np):
    """Zeros of ``shape`` laid out in memory as ``order`` says (see ``memory_order``)."""
    inverse = tuple(sorted(range(len(order)), key=order.__getitem__))
    return xp.zeros(tuple(shape[axis] for axis in order), dtype=dtype).transpose(inverse)


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
