"""Shape ops: reshape, flatten, transpose/permute, indexing and slicing, constant padding."""
import operator

from ..backend import get_array_module, memory_order, zeros_in_order
from ..engine import Function, Tensor, as_tensor


class Reshape(Function):
    """y = x viewed with a new shape;   dx = dy reshaped back."""

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Permute(Function):
    """y = x with its axes reordered by ``dims``;   dx = dy permuted by the inverse order."""

    def __init__(self, dims):
        self.dims = dims

    def forward(self, x):
        return x.transpose(self.dims)

    def backward(self, gy):
        inverse = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inverse[d] = i
        return gy.transpose(inverse)


class GetItem(Function):
    """y = x[index];   dx = zeros with dy written (basic index) or scatter-added (advanced) at index.

    Strided slicing such as option A's ``x[:, :, ::2, ::2]`` is a basic index: its backward
    writes the gradient into every other pixel of a zero array.
    """

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        self.order = memory_order(x)  # dx gets x's layout: the activations' layout survives the shortcut's backward
        return x[self.index]

    def backward(self, gy):
        xp = get_array_module(gy)
        gx = zeros_in_order(self.in_shape, self.order, self.dtype, xp)
        if _is_basic(self.index):
            gx[self.index] = gy
        else:  # repeated integer indices must add up, which plain assignment would not do
            xp.add.at(gx, self.index, gy)
        return gx


class Pad(Function):
    """y = x with ``widths[d] = (before, after)`` constant values around each axis d;
    dx = dy with the padding sliced off."""

    def __init__(self, widths, value):
        self.widths, self.value = widths, value

    def forward(self, x):
        xp = get_array_module(x)
        out_shape = tuple(n + a + b for n, (a, b) in zip(x.shape, self.widths))
        y = xp.empty_like(x, shape=out_shape)  # x's memory layout (channels-last for the CPU convs' outputs)
        y.fill(self.value)
        self.inner = tuple(slice(a, a + n) for n, (a, _) in zip(x.shape, self.widths))
        y[self.inner] = x
        return y

    def backward(self, gy):
        return gy[self.inner]


def _is_basic(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) for p in parts)


def reshape(x, shape):
    """x with a new shape (one dimension may be -1), as ``torch.reshape``."""
    x = as_tensor(x)
    shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if shape.count(-1) > 1 or any(s < -1 for s in shape) or (
        x.size != known if -1 not in shape else (known == 0 or x.size % known)
    ):
        raise ValueError(f"reshape: cannot view a tensor of shape {x.shape} ({x.size} elements) as {shape}")
    return Reshape(shape)(x)


def flatten(x, start_dim=0, end_dim=-1):
    """Merge dimensions start_dim..end_dim into one, as ``torch.flatten``."""
    x = as_tensor(x)
    nd = max(x.ndim, 1)
    for d in (start_dim, end_dim):
        if not -nd <= d < nd:
            raise IndexError(f"flatten: dim {d} is out of range for shape {x.shape}")
    s, e = start_dim % nd, end_dim % nd
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {x.shape}")
    size = 1
    for n in x.shape[s:e + 1]:
        size *= n
    return reshape(x, x.shape[:s] + (size,) + x.shape[e + 1:])


def permute(x, dims):
    """x with its dimensions reordered, as ``torch.permute``."""
    x = as_tensor(x)
    for d in dims:
        if not -x.ndim <= d < x.ndim:
            raise IndexError(f"permute: dim {d} is out of range for shape {x.shape}")
    dims = tuple(int(d) % max(x.ndim, 1) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} are not a permutation of the {x.ndim} dimensions of shape {x.shape}")
    return Permute(dims)(x)


def transpose(x, dim0, dim1):
    """x with dimensions dim0 and dim1 swapped, as ``torch.transpose``."""
    x = as_tensor(x)
    for d in (dim0, dim1):
        if not -x.ndim <= d < x.ndim:
            raise IndexError(f"transpose: dim {d} is out of range for shape {x.shape}")
    dims = list(range(x.ndim))
    dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
    return Permute(tuple(dims))(x)


def getitem(x, index):
    """x[index]: ints, slices (with steps), None, Ellipsis, or integer/boolean arrays."""
    x = as_tensor(x)
    parts = index if isinstance(index, tuple) else (index,)
    parts = tuple(p.data if isinstance(p, Tensor) else p for p in parts)
    for p in parts:
        if isinstance(p, slice) and p.step is not None and p.step <= 0:
            raise ValueError(f"getitem: slice steps must be positive (got {p.step}) for shape {x.shape}")
    index = parts if isinstance(index, tuple) else parts[0]
    try:
        get_array_module(x.data).empty(x.shape, dtype="int8")[index]  # validate cheaply, with a clear error
    except (IndexError, TypeError) as e:
        raise IndexError(f"getitem: index {index!r} is invalid for a tensor of shape {x.shape}: {e}") from None
    return GetItem(index)(x)


def pad(x, pad, value=0.0):
    """Constant padding as ``torch.nn.functional.pad``: ``pad`` lists (before, after) pairs
    starting from the *last* dimension, e.g. (0, 0, 0, 0, 4, 4) pads channels of NCHW by 4."""
    x = as_tensor(x)
    pad = tuple(pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: expected an even number of values, at most 2 per dimension of shape {x.shape}, got {pad}")
    try:
        if any(isinstance(p, bool) for p in pad):
            raise TypeError
        pad = tuple(operator.index(p) for p in pad)  # accepts NumPy integers too
    except TypeError:
        raise TypeError(f"pad: widths must be integers, got {pad}") from None
    if any(p < 0 for p in pad):
        raise ValueError(f"pad: widths must be non-negative (minires does not crop with negative pads), got {pad}")
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return Pad(tuple(widths), value)(x)
