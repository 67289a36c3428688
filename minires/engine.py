"""The autograd engine: ``Tensor``, ``Function`` and reverse-mode ``backward``.

How backprop works here, in one file:

* Every op is a ``Function`` subclass with a ``forward`` (arrays in, one array out) and a
  ``backward`` (the gradient of the output in, one gradient per input out).
* Calling an op on tensors runs ``forward`` on their arrays and, when a gradient is wanted,
  records the op as the result's ``_ctx`` together with its inputs: a dynamic graph.
* ``Tensor.backward`` sorts that graph topologically (an explicit-stack loop, because
  ResNet-1202's graph is far deeper than Python's recursion limit), then walks it from the
  output back to the leaves, calling each op's ``backward`` and summing the gradients of
  tensors used more than once (a residual block uses its input twice: branch and shortcut).
* After ``backward`` the graph is freed (each op drops what it saved), as in PyTorch, unless
  ``retain_graph=True``.

Gradients (``.grad``) are plain backend arrays (NumPy or CuPy), as in PyTorch where
``.grad`` has the parameter's shape, dtype and device. Only leaves get a ``.grad``.
"""
import functools
import os
import threading

import numpy as np

from .backend import check_device, device_of, get_array_module, to_device, to_numpy

_state = threading.local()


def is_grad_enabled():
    """Whether ops record the graph (False inside ``no_grad()``)."""
    return getattr(_state, "grad_enabled", True)


class no_grad:
    """Context manager (and decorator) under which no graph is recorded, as ``torch.no_grad``."""

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():  # a fresh context per call, so recursion restores the mode correctly
                return fn(*args, **kwargs)
        return wrapper

    def __enter__(self):
        self._prev = is_grad_enabled()
        _state.grad_enabled = False

    def __exit__(self, *exc):
        _state.grad_enabled = self._prev
        return False


def _reference_from_environment():
    """``MINIRES_REFERENCE=1``: start with every op on its reference path (unset or 0: the fast paths)."""
    value = os.environ.get("MINIRES_REFERENCE", "0").strip()
    if value not in ("0", "1", ""):
        raise ValueError(f"MINIRES_REFERENCE must be 1 (reference ops) or 0 (fast paths), got {value!r}")
    return value == "1"


_reference = _reference_from_environment()


def is_reference():
    """Whether every op runs its reference ``forward``/``backward`` (``use_reference``)."""
    return _reference


class use_reference:
    """Run every op on its reference ``forward``/``backward``: the plain whole-batch math of
    ``minires/ops``, on NumPy or CuPy, with none of the kernels of ``minires/cpu_kernels`` or
    ``minires/gpu_kernels.py`` (and SGD's NumPy-form update on the GPU too).

    ``use_reference()`` switches for the rest of the program, ``use_reference(False)`` back to
    the fast paths; ``with use_reference(): ...`` for one block only (the setting before it
    comes back at its end). ``MINIRES_REFERENCE=1`` in the environment is the default at start.
    The fast paths change the time a step takes, not its numbers beyond float rounding
    (tests/test_fast_paths.py; notebook 06 measures both on a ResNet-20 step).
    """

    def __init__(self, enabled=True):
        global _reference
        if not isinstance(enabled, bool):
            raise TypeError(f"use_reference: enabled must be True or False, got {enabled!r}")
        self._previous, _reference = _reference, enabled

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global _reference
        _reference = self._previous
        return False


def _path_for(array):
    """Which of an op's methods run on ``array``: "reference" (``forward``/``backward``), "cpu"
    (``forward_cpu``/``backward_cpu``) or "gpu" (``forward_gpu``/``backward_gpu``). The one place
    where the engine picks a fast path."""
    if _reference:
        return "reference"
    return "gpu" if _on_gpu(array) else "cpu"


_FORWARD = {"reference": "forward", "cpu": "forward_cpu", "gpu": "forward_gpu"}
_BACKWARD = {"reference": "backward", "cpu": "backward_cpu", "gpu": "backward_gpu"}


def _is_float(dtype):
    return np.issubdtype(dtype, np.floating)


def _as_array(data, dtype=None):
    """Backend array from a Tensor, a NumPy/CuPy array, or Python numbers."""
    if isinstance(data, Tensor):
        data = data.data
    xp = get_array_module(data)
    if xp is np and not isinstance(data, np.ndarray):
        python_data = not isinstance(data, np.generic)  # NumPy scalars keep their dtype
        data = np.asarray(data)
        # Python floats become float32, the training dtype (as torch.tensor does).
        if python_data and dtype is None and data.dtype == np.float64:
            data = data.astype(np.float32)
    if dtype is not None and data.dtype != dtype:
        data = data.astype(dtype)
    return data


class Tensor:
    """An n-dimensional array that can record the ops applied to it.

    ``Tensor(data, requires_grad=False)``: ``data`` is a NumPy or CuPy array (kept as it
    is: float64 stays float64) or nested Python numbers (floats become float32).
    """

    __slots__ = ("data", "grad", "requires_grad", "_ctx", "__weakref__")
    __array_priority__ = 1000  # so that ndarray + Tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self._ctx = None  # the Function that made this tensor, if recorded
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ----------------------------------------------------------------- basics
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        return len(self.data)

    @property
    def device(self):
        """'cpu' (NumPy) or 'gpu' (CuPy)."""
        return device_of(self.data)

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def grad_fn(self):
        """The op (a ``Function``) that made this tensor, None for leaves: the graph is
        ``t.grad_fn.inputs``, their ``grad_fn`` and so on, as in PyTorch."""
        return self._ctx

    def requires_grad_(self, flag=True):
        if flag and not _is_float(self.data.dtype):
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype} "
                f"(shape {self.shape}); convert with .float() or Tensor(x.astype('float32'))"
            )
        self.requires_grad = bool(flag)
        return self

    def detach(self):
        """A new tensor sharing this one's data, cut from the graph."""
        return Tensor(self.data)

    def numpy(self):
        """The data as a NumPy array (copied from the GPU if needed)."""
        return to_numpy(self.data)

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted, shape is {self.shape}")
        return self.data.reshape(()).item()

    def to(self, device):
        """This tensor on ``device`` ('cpu' or 'gpu'); ``self`` when already there.

        The copy is a leaf that keeps ``requires_grad`` (a device move is not recorded).
        """
        device = check_device(device)
        if device == self.device:
            return self
        return Tensor(to_device(self.data, device), requires_grad=self.requires_grad)

    def cpu(self):
        return self.to("cpu")

    def gpu(self):
        return self.to("gpu")

    def astype(self, dtype):
        """A copy with another dtype (not recorded: use it on leaves)."""
        return Tensor(self.data.astype(dtype), requires_grad=self.requires_grad and _is_float(np.dtype(dtype)))

    def float(self):
        return self.astype(np.float32)

    def double(self):
        return self.astype(np.float64)

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        dev = ", device='gpu'" if self.device == "gpu" else ""
        body = np.array2string(to_numpy(self.data), separator=", ", prefix="tensor(")
        return f"tensor({body}, dtype={self.dtype}{dev}{extra})"

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"truth value of a tensor with {self.data.size} elements is ambiguous")
        return bool(self.data)

    # --------------------------------------------------------------- backward
    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad.

        ``grad`` is the upstream gradient (array or Tensor of this tensor's shape); it may be
        left out only for one-element tensors, where it defaults to 1.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward(): this tensor does not require grad and has no graph; set "
                "requires_grad=True on the inputs (and check you are not inside no_grad())"
            )
        xp = get_array_module(self.data)
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward(): grad can be implicitly created only for one-element outputs, but "
                    f"this tensor has shape {self.shape}; pass a gradient of that shape, e.g. "
                    f"y.backward(np.ones({self.shape}))"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = _as_array(grad)
            if device_of(grad) != self.device:
                raise RuntimeError(f"backward(): grad is on {device_of(grad)} but the tensor is on {self.device}")
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"backward(): grad has shape {tuple(grad.shape)} but the tensor has shape {self.shape}")
            if grad.dtype != self.dtype:
                raise TypeError(f"backward(): grad has dtype {grad.dtype} but the tensor has dtype {self.dtype}")

        order = _topological_order(self)
        grads = {id(self): grad}
        for i in range(len(order) - 1, -1, -1):
            t = order[i]
            order[i] = None  # let arrays go as soon as they are done with (peak memory)
            g = grads.pop(id(t), None)
            if g is None:
                continue
            fn = t._ctx
            if fn is None:  # a leaf: accumulate, never alias an array another tensor may hold
                t.grad = g.copy() if t.grad is None else t.grad + g
                continue
            if fn.freed:
                raise RuntimeError(
                    f"backward(): trying to backward through the graph a second time ({type(fn).__name__} "
                    "already freed its saved arrays); call backward(retain_graph=True) the first time"
                )
            in_grads = getattr(fn, _BACKWARD[fn.path])(g)  # the path its forward took: it saved for that one
            if not isinstance(in_grads, tuple):
                in_grads = (in_grads,)
            for inp, ig in zip(fn.inputs, in_grads):
                if ig is None or inp is None or not inp.requires_grad:
                    continue
                key = id(inp)
                grads[key] = ig if key not in grads else grads[key] + ig
            if not retain_graph:
                fn.free()

    # Operators (x + y, x @ w, x[i]) and methods (x.sum(), x.reshape(...)) are attached by
    # minires.functional.setup_tensor_methods(), called once from minires/__init__.py: the
    # engine then never imports the ops that are built on it.


def _topological_order(root):
    """Tensors reachable from ``root`` that need a gradient, inputs before outputs.

    Depth-first post-order with an explicit stack: a recursive version would overflow
    Python's stack on ResNet-1202 (thousands of ops in a chain).
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        t, done = stack.pop()
        if done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        if t._ctx is not None and t._ctx.inputs is not None:
            for inp in t._ctx.inputs:
                if inp is not None and inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return order


class Function:
    """Base class of every op: ``forward`` on arrays, ``backward`` on the output's gradient.

    Subclasses take their hyperparameters in ``__init__``, save in ``forward`` only what
    ``backward`` needs (as attributes of ``self``), and return from ``backward`` one gradient
    per input, in order (``None`` for inputs that take none, e.g. integer targets).
    Call an op as ``MyOp(hyper=...)(x, w)``; inputs are Tensors or None.

    The contract between the engine and an op:

    * ``self.needs_input_grad`` (set before ``forward`` runs, as in teenygrad): one bool per
      input, True where that input wants a gradient. ``backward`` computes only those and
      returns None for the others.
    * ``forward``/``backward`` are the reference: the plain whole-batch math, on NumPy or CuPy.
      The engine calls ``forward_cpu``/``backward_cpu`` on NumPy data and ``forward_gpu``/
      ``backward_gpu`` on CuPy data instead (``self.path`` says which: "cpu", "gpu", or
      "reference" under ``use_reference``); they default to the reference, and an op overrides
      them only to call a kernel, array in and array out, from ``minires/cpu_kernels/`` or
      ``minires/gpu_kernels.py`` (Chainer's rule). The op keeps what backward needs; a kernel
      never touches the op.
    """

    inputs = None
    freed = False

    def __call__(self, *inputs):
        arrays = [None if t is None else t.data for t in inputs]
        _check_same_device(type(self).__name__, inputs)
        record = is_grad_enabled()
        self.needs_input_grad = tuple(record and t is not None and t.requires_grad for t in inputs)
        self.path = _path_for(next((a for a in arrays if a is not None), None))
        out = getattr(self, _FORWARD[self.path])(*arrays)
        result = Tensor(out)
        if any(self.needs_input_grad):
            result.requires_grad = True
            result._ctx = self
            self.inputs = inputs
        return result

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad_output):
        raise NotImplementedError

    def forward_cpu(self, *arrays):
        return self.forward(*arrays)

    def backward_cpu(self, grad_output):
        return self.backward(grad_output)

    def forward_gpu(self, *arrays):
        return self.forward(*arrays)

    def backward_gpu(self, grad_output):
        return self.backward(grad_output)

    def free(self):
        """Drop everything saved for backward (and the link to the inputs)."""
        self.__dict__.clear()
        self.freed = True


def _on_gpu(array):
    """Whether ``array`` is a CuPy array (NumPy arrays, None and scalars are not)."""
    return array is not None and not isinstance(array, np.ndarray) and get_array_module(array) is not np


def _check_same_device(name, inputs):
    devices = [device_of(t.data) for t in inputs if t is not None]
    if devices and any(d != devices[0] for d in devices):
        shown = ", ".join(f"input {i} on {d}" for i, d in enumerate(devices))
        raise RuntimeError(f"{name}: expected all tensors on the same device, got {shown}; use .to(device)")


def as_tensor(x, like=None):
    """``x`` as a Tensor; Python numbers take the dtype and device of ``like`` (a Tensor).

    That keeps ``float32_tensor * 2.0`` in float32 and on the tensor's device.
    """
    if isinstance(x, Tensor):
        return x
    if like is not None and isinstance(x, (int, float, bool, np.number)):
        xp = get_array_module(like.data)
        return Tensor(xp.asarray(x, dtype=like.dtype))
    if like is not None:
        arr = _as_array(x)
        if device_of(arr) != like.device:
            raise RuntimeError(f"expected an array on {like.device}, got one on {device_of(arr)}")
        return Tensor(arr)
    return Tensor(x)


def tensor(data, requires_grad=False, dtype=None):
    """``minires.tensor(data)``: like ``Tensor(data)``, as ``torch.tensor``."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)

