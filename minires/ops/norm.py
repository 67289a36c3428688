"""Batch normalization (Ioffe & Szegedy, 2015), as ``torch.nn.functional.batch_norm``."""
import functools
from types import SimpleNamespace

import numpy as np

from ..backend import device_of, get_array_module
from ..engine import Function, Tensor, as_tensor


def channel_rows(x):
    """x (N, C, ...) as a (C, M) matrix, one row per channel, M = N * (spatial size).

    A free view when x is channel-major (C, N, H, W) memory, as conv outputs are; otherwise
    one copy. Per-channel statistics are then reductions along contiguous rows, and every
    per-channel constant broadcasts as a (C, 1) column.
    """
    xp = get_array_module(x)
    return xp.moveaxis(x, 1, 0).reshape(x.shape[1], -1)


def from_channel_rows(rows, shape):
    """Inverse of ``channel_rows``: (C, M) back to an (N, C, ...) view of ``shape``."""
    xp = get_array_module(rows)
    return xp.moveaxis(rows.reshape((shape[1], shape[0]) + tuple(shape[2:])), 0, 1)


class BatchNorm(Function):
    """Normalise each channel over the batch and spatial axes, then scale and shift.

    Training mode (statistics of this batch, over the m = N*H*W values of a channel)::

        mean = (1/m) sum x,   var = (1/m) sum (x - mean)^2          (biased, for normalising)
        x_hat = (x - mean) / sqrt(var + eps),   y = gamma * x_hat + beta
        dx = gamma / sqrt(var + eps) * (dy - mean(dy) - x_hat * mean(dy * x_hat))
        dgamma = sum(dy * x_hat),   dbeta = sum(dy)
        running_mean <- (1 - momentum) * running_mean + momentum * mean
        running_var  <- (1 - momentum) * running_var  + momentum * var * m / (m - 1)   (unbiased)

    Eval mode uses the running statistics, so x_hat is an affine function of x and
    dx = gamma / sqrt(running_var + eps) * dy.

    Synchronised batch norm (``process_group`` given, as ``torch.nn.SyncBatchNorm``): the batch
    is split over the ranks of the group, and every per-channel sum above (and the count m) is
    summed over all ranks before use (``_all_sum``), so each rank normalises with the statistics
    of the whole batch::

        m = sum_r m_r,   mean = (1/m) sum_r sum x,   var = (1/m) sum_r sum (x - mean)^2
        dx = gamma / sqrt(var + eps) * (dy - (1/m) sum_r sum dy - x_hat * (1/m) sum_r sum dy * x_hat)

    dgamma and dbeta stay this rank's own sums: they are parameter gradients, which the data-
    parallel step then averages over the ranks like every other gradient. Each rank's dy is
    the gradient of its own mean loss, N times its share of the global mean loss when the N
    ranks hold equal slices; the factor passes linearly through dx and the averaging removes
    it, so N ranks reproduce the single-process gradients exactly (up to summation order).

    Implementation: x is handled as a (C, m) matrix (``channel_rows``), so each statistic is a
    reduction along contiguous rows. Backward recomputes x - mean from x instead of saving
    x_hat: x is kept by the graph anyway, x_hat would be one more activation per BN layer.
    On the GPU, training mode runs the same formulas as a few fused CuPy kernels
    (``_forward_gpu``, ``_backward_gpu``, kernels in ``_gpu_kernels``).
    """

    def __init__(self, training, momentum, eps, running_mean, running_var, process_group=None):
        self.training, self.momentum, self.eps = training, momentum, eps
        self.running_mean, self.running_var = running_mean, running_var
        self.process_group = process_group

    def _all_sum(self, *parts):
        """Per-channel sums (and counts) of this rank's batch -> of the whole batch.

        Without a process group this rank's batch is the whole batch: the parts come back as
        they are. With one, the parts travel in one buffer through one allreduce (one message,
        not one per statistic); counts come back as ints.
        """
        if self.process_group is None:
            return parts
        xp = get_array_module(*parts)
        dtype = next(p.dtype for p in parts if hasattr(p, "dtype"))
        flat = xp.concatenate([xp.asarray(p, dtype=dtype).reshape(-1) for p in parts])
        flat = self.process_group.all_reduce_sum(flat)
        out, start = [], 0
        for p in parts:
            size = getattr(p, "size", 1)
            piece = flat[start:start + size]
            out.append(piece.reshape(p.shape) if hasattr(p, "shape") else type(p)(round(float(piece[0]))))
            start += size
        return out

    def forward(self, x, weight, bias):
        xp = get_array_module(x)
        if xp is not np and self.training:
            return self._forward_gpu(x, weight, bias)
        x2 = channel_rows(x)
        if self.training:
            total, m = self._all_sum(x2.sum(axis=1), x2.shape[1])
            mean = total / m
            xc = x2 - mean[:, None]
            (sum_sq,) = self._all_sum(xp.einsum("cm,cm->c", xc, xc))  # sum of squares without an (x - mean)^2 temporary
            var = sum_sq / m
            if self.running_mean is not None:
                mom = x.dtype.type(self.momentum)
                self.running_mean *= 1 - mom
                self.running_mean += mom * mean
                self.running_var *= 1 - mom
                self.running_var += (mom * m / (m - 1)) * var
        else:
            # copies: a train-mode call before backward would change the running stats in place
            mean, var = self.running_mean.copy(), self.running_var.copy()
            xc = x2 - mean[:, None]
        inv_std = 1 / xp.sqrt(var + x.dtype.type(self.eps))
        self.running_mean = self.running_var = None  # backward needs neither
        self.x2, self.shape, self.mean, self.inv_std, self.weight = x2, x.shape, mean, inv_std, weight
        self.m = m if self.training else None  # values per channel of the whole batch
        # y = gamma * x_hat + beta, computed in place in the xc temporary: two passes, no new array
        xc *= (inv_std if weight is None else inv_std * weight)[:, None]
        if bias is not None:
            xc += bias[:, None]
        return from_channel_rows(xc, x.shape)

    def backward(self, gy):
        xp = get_array_module(gy)
        if xp is not np and self.training:
            return self._backward_gpu(gy)
        gy2, inv_std = channel_rows(gy), self.inv_std
        needs = [t is not None and t.requires_grad for t in self.inputs]
        scale = inv_std if self.weight is None else inv_std * self.weight  # dy/dx_hat * dx_hat/dx
        gbeta = gy2.sum(axis=1)
        ggamma = gx = None
        if self.training or needs[1]:
            xc = self.x2 - self.mean[:, None]  # recomputed: x_hat = xc * inv_std
            ggamma = xp.einsum("cm,cm->c", gy2, xc) * inv_std  # sum(dy * x_hat), no temporary
        if needs[0] and self.training:
            # dx = scale * (dy - sum_dy/m - x_hat * sum_dy_xhat/m), as dy*scale + xc*k_xc + k_1, in place in xc
            sum_dy, sum_dy_xhat = self._all_sum(gbeta, ggamma)  # gbeta, ggamma stay this rank's (see above)
            m = self.m
            xc *= (-scale * inv_std * sum_dy_xhat / m)[:, None]
            xc += (-scale * sum_dy / m)[:, None]
            xc += gy2 * scale[:, None]
            gx = from_channel_rows(xc, self.shape)
        elif needs[0]:
            gx = gy * scale.reshape((1, -1) + (1,) * (gy.ndim - 2))
        return gx, ggamma, gbeta

    # --- GPU, training mode: the formulas above, fused ---------------------------------
    # CuPy launches one kernel per array operation, and at CIFAR sizes each launch (a few
    # microseconds of GPU work, more of Python) costs more than its arithmetic: the NumPy-style
    # code above is about 18 launches forward and 16 backward. Here the reductions stay library
    # calls and the elementwise work around them is fused: y in one kernel, dx in one, the
    # running statistics and 1/sqrt(var + eps) in one each. Eval mode keeps
    # the generic code: it is not in the training loop.

    def _forward_gpu(self, x, weight, bias):
        xp, k = get_array_module(x), _gpu_kernels()
        x2 = channel_rows(x)
        cast = x.dtype.type
        # The reductions stay library calls: hand-written ReductionKernels over only 16-64 rows
        # (one per channel) measured up to 2.7x slower on an H100 than the generic code.
        total, m = self._all_sum(x2.sum(axis=1), x2.shape[1])
        mean = total / cast(m)
        xc = x2 - mean[:, None]
        (sum_sq,) = self._all_sum(xp.einsum("cm,cm->c", xc, xc))
        var = sum_sq / cast(m)
        if self.running_mean is not None:
            mom = cast(self.momentum)
            k.update_running_stats(mean, var, mom, cast(mom * m / (m - 1)), self.running_mean, self.running_var)
        inv_std = k.inv_std(var, cast(self.eps))
        self.running_mean = self.running_var = None  # backward needs neither
        self.x2, self.shape, self.mean, self.inv_std, self.weight = x2, x.shape, mean, inv_std, weight
        self.m = m
        y2 = xp.empty_like(x2)  # laid out as x2, as the NumPy path's x2 - mean is
        k.normalize(x2, mean[:, None], inv_std[:, None], cast(1) if weight is None else weight[:, None],
                    cast(0) if bias is None else bias[:, None], y2)
        return from_channel_rows(y2, x.shape)

    def _backward_gpu(self, gy):
        xp, k = get_array_module(gy), _gpu_kernels()
        gy2, inv_std, cast = channel_rows(gy), self.inv_std, gy.dtype.type
        needs = [t is not None and t.requires_grad for t in self.inputs]
        gbeta = gy2.sum(axis=1)                                               # sum(dy)
        ggamma = xp.einsum("cm,cm->c", gy2, self.x2 - self.mean[:, None]) * inv_std  # sum(dy * x_hat)
        gx = None
        if needs[0]:
            sum_dy, sum_dy_xhat = self._all_sum(gbeta, ggamma)  # gbeta, ggamma stay this rank's
            gx2 = xp.empty_like(self.x2)  # laid out as x2, as on the CPU
            k.batch_norm_dx(gy2, self.x2, self.mean[:, None], inv_std[:, None],
                            cast(1) if self.weight is None else self.weight[:, None],
                            sum_dy[:, None], sum_dy_xhat[:, None], cast(self.m), gx2)
            gx = from_channel_rows(gx2, self.shape)
        return gx, ggamma, gbeta


@functools.cache
def _gpu_kernels():
    """BatchNorm's fused CuPy kernels, built on first use (importing minires never needs CuPy).

    Each is type-generic (``T`` is float32 in training, float64 in the gradient checks); the
    per-channel arrays come in as (C, 1) columns that broadcast along the (C, m) rows, scalars
    are cast to ``T``. ``weight``/``bias`` are gamma/beta, or the scalars 1/0 when absent.
    """
    import cupy as cp

    return SimpleNamespace(
        # 1 / sqrt(var + eps): three CuPy ops (add, sqrt, divide) in one launch.
        inv_std=cp.ElementwiseKernel(
            "T var, T eps", "T inv_std", "inv_std = 1 / sqrt(var + eps)", "minires_bn_inv_std"),
        # Both running statistics, in place: six CuPy ops in one launch.
        update_running_stats=cp.ElementwiseKernel(
            "T mean, T var, T momentum, T unbiased_momentum", "T running_mean, T running_var",
            """
            running_mean = (1 - momentum) * running_mean + momentum * mean;
            running_var = (1 - momentum) * running_var + unbiased_momentum * var;
            """,
            "minires_bn_update_running_stats"),
        # y = gamma * x_hat + beta with x_hat = (x - mean) * inv_std: one pass over x
        # instead of three (subtract, scale, shift).
        normalize=cp.ElementwiseKernel(
            "T x, T mean, T inv_std, T weight, T bias", "T y",
            "y = (x - mean) * (inv_std * weight) + bias", "minires_bn_normalize"),
        # dx = gamma * inv_std * (dy - sum(dy)/m - x_hat * sum(dy * x_hat)/m), the class
        # docstring's formula, in one pass instead of six.
        batch_norm_dx=cp.ElementwiseKernel(
            "T dy, T x, T mean, T inv_std, T weight, T sum_dy, T sum_dy_xhat, T m", "T dx",
            """
            T x_hat = (x - mean) * inv_std;
            dx = weight * inv_std * (dy - sum_dy / m - x_hat * sum_dy_xhat / m);
            """,
            "minires_bn_dx"),
    )


def _stat_array(name, stat, x):
    """A running statistic (array or Tensor) as the array to update in place, validated."""
    if stat is None:
        return None
    arr = stat.data if isinstance(stat, Tensor) else stat
    if tuple(arr.shape) != (x.shape[1],):
        raise ValueError(f"batch_norm: {name} must have shape ({x.shape[1]},) for input shape {x.shape}, got {tuple(arr.shape)}")
    if device_of(arr) != x.device:
        raise RuntimeError(f"batch_norm: {name} is on {device_of(arr)} but input x is on {x.device}")
    if arr.dtype != x.dtype:
        raise TypeError(f"batch_norm: {name} has dtype {arr.dtype} but x has {x.dtype}")
    return arr


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               *, process_group=None):
    """Batch normalization over dimension 1 of x (N, C, ...), as ``torch.nn.functional.batch_norm``.

    ``running_mean``/``running_var`` (shape (C,), arrays or Tensors, or None) are updated in
    place when ``training``; in eval mode they normalise x. ``process_group`` (minires only;
    torch keeps it in ``nn.SyncBatchNorm``): in training, compute the statistics over the
    batches of all its ranks; anything with ``all_reduce_sum(array) -> array``, e.g. what
    ``minires.distributed.setup`` returns. Every rank must call it at the same point.
    """
    x = as_tensor(x)
    if x.ndim < 2:
        raise ValueError(f"batch_norm: input x must have at least 2 dimensions (N, C, ...), got shape {x.shape}")
    if not 0 <= momentum <= 1:
        raise ValueError(f"batch_norm: momentum must be in [0, 1], got {momentum}")
    if eps <= 0:
        raise ValueError(f"batch_norm: eps must be > 0, got {eps}")
    rm, rv = _stat_array("running_mean", running_mean, x), _stat_array("running_var", running_var, x)
    if (rm is None) != (rv is None):
        raise ValueError("batch_norm: give both running_mean and running_var, or neither")
    if not training and rm is None:
        raise ValueError("batch_norm: eval mode (training=False) needs running_mean and running_var")
    if training and x.size // x.shape[1] < 2:
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input shape {x.shape}")
    params = []
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None:
            p = as_tensor(p)
            if p.shape != (x.shape[1],):
                raise ValueError(f"batch_norm: {name} must have shape ({x.shape[1]},) for input shape {x.shape}, got {p.shape}")
            if p.dtype != x.dtype:
                raise TypeError(f"batch_norm: {name} has dtype {p.dtype} but x has {x.dtype}")
        params.append(p)
    if process_group is not None and not callable(getattr(process_group, "all_reduce_sum", None)):
        raise TypeError(f"batch_norm: process_group must have an all_reduce_sum(array) method, got {type(process_group).__name__}")
    return BatchNorm(training, momentum, eps, rm, rv, process_group if training else None)(x, *params)
