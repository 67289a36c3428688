"""Reductions: sum and mean over dimensions (PyTorch's ``dim``/``keepdim``)."""
from ..backend import get_array_module
from ..engine import Function, as_tensor


def normalize_dims(name, dim, ndim):
    """``dim`` (None, int or sequence) as a sorted tuple of non-negative axes, validated."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not isinstance(d, int) or isinstance(d, bool) or not -ndim <= d < max(ndim, 1):
            raise IndexError(f"{name}: dim {d!r} is out of range for a tensor with {ndim} dimensions")
        out.append(d % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"{name}: dim {dim!r} repeats a dimension")
    return tuple(sorted(out))


class Sum(Function):
    """y = sum of x over ``dims``;   dx = dy broadcast back over the summed dims."""

    def __init__(self, dims, keepdim):
        self.dims, self.keepdim = dims, keepdim

    def forward(self, x):
        self.in_shape = x.shape
        return x.sum(axis=self.dims, keepdims=self.keepdim)

    def backward(self, gy):
        xp = get_array_module(gy)
        if not self.keepdim:
            gy = xp.expand_dims(gy, self.dims) if self.dims else gy
        return xp.broadcast_to(gy, self.in_shape)


class Mean(Function):
    """y = mean of x over ``dims`` (count m);   dx = dy / m broadcast back."""

    def __init__(self, dims, keepdim):
        self.dims, self.keepdim = dims, keepdim

    def forward(self, x):
        self.in_shape = x.shape
        return x.mean(axis=self.dims, keepdims=self.keepdim)

    def backward(self, gy):
        xp = get_array_module(gy)
        count = 1
        for d in self.dims:
            count *= self.in_shape[d]
        if not self.keepdim:
            gy = xp.expand_dims(gy, self.dims) if self.dims else gy
        return xp.broadcast_to(gy / gy.dtype.type(count), self.in_shape)


def sum(x, dim=None, keepdim=False):
    """Sum over ``dim`` (all dimensions when None), as ``torch.sum``."""
    x = as_tensor(x)
    return Sum(normalize_dims("sum", dim, x.ndim), keepdim)(x)


def mean(x, dim=None, keepdim=False):
    """Mean over ``dim`` (all dimensions when None), as ``torch.mean``."""
    x = as_tensor(x)
    if x.size == 0:
        raise ValueError(f"mean: the tensor is empty (shape {x.shape})")
    if x.dtype.kind != "f":
        raise TypeError(f"mean: needs a floating-point tensor, got dtype {x.dtype} (convert with .float())")
    return Mean(normalize_dims("mean", dim, x.ndim), keepdim)(x)
