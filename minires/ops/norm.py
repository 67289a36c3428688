"""Batch normalization (Ioffe & Szegedy, 2015), as ``torch.nn.functional.batch_norm``."""
from .. import gpu_kernels
from .._checks import batch_norm_settings
from ..backend import device_of, get_array_module
from ..engine import Function, Tensor, as_tensor
from ..threads import for_each_row_block


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
    On NumPy data every pass runs on the worker threads, each on a block of channels
    (``for_each_row_block``); the per-channel sums are those of one thread, bit for bit.
    On the GPU, training mode runs the same formulas as a few fused CuPy kernels
    (``forward_gpu``/``backward_gpu``, in ``minires/gpu_kernels.py``).
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
        x2 = channel_rows(x)
        c = x2.shape[0]
        y2 = xp.empty(x2.shape, dtype=x.dtype)  # x - mean first, then y in place: channel-major like x
        if self.training:
            sums, sum_sq = xp.empty(c, dtype=x.dtype), xp.empty(c, dtype=x.dtype)
            for_each_row_block(lambda r: x2[r].sum(axis=1, out=sums[r]), x2)
            total, m = self._all_sum(sums, x2.shape[1])
            mean = total / m

            def centre(r):  # sum of squares without an (x - mean)^2 temporary
                xp.subtract(x2[r], mean[r, None], out=y2[r])
                sum_sq[r] = xp.einsum("cm,cm->c", y2[r], y2[r])

            for_each_row_block(centre, x2)
            (sum_sq,) = self._all_sum(sum_sq)
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
            for_each_row_block(lambda r: xp.subtract(x2[r], mean[r, None], out=y2[r]), x2)
        inv_std = 1 / xp.sqrt(var + x.dtype.type(self.eps))
        self.running_mean = self.running_var = None  # backward needs neither
        self.x2, self.shape, self.mean, self.inv_std, self.weight = x2, x.shape, mean, inv_std, weight
        self.m = m if self.training else None  # values per channel of the whole batch
        scale = inv_std if weight is None else inv_std * weight

        def scale_shift(r):  # y = gamma * x_hat + beta, in place: two passes, no new array
            y2[r] *= scale[r, None]
            if bias is not None:
                y2[r] += bias[r, None]

        for_each_row_block(scale_shift, y2)
        return from_channel_rows(y2, x.shape)

    def backward(self, gy):
        xp = get_array_module(gy)
        gy2, inv_std = channel_rows(gy), self.inv_std
        c = gy2.shape[0]
        needs = self.needs_input_grad
        scale = inv_std if self.weight is None else inv_std * self.weight  # dy/dx_hat * dx_hat/dx
        dx_from_batch = self.training and needs[0]  # training-mode dx needs both sums below
        gbeta = xp.empty(c, dtype=gy.dtype) if dx_from_batch or needs[2] else None
        ggamma = xp.empty(c, dtype=gy.dtype) if dx_from_batch or needs[1] else None
        xc = xp.empty(gy2.shape, dtype=gy.dtype) if ggamma is not None else None

        def sums(r):  # dbeta = sum(dy), dgamma = sum(dy * x_hat), x_hat = xc * inv_std with xc recomputed
            if gbeta is not None:
                gy2[r].sum(axis=1, out=gbeta[r])
            if ggamma is not None:
                xp.subtract(self.x2[r], self.mean[r, None], out=xc[r])
                ggamma[r] = xp.einsum("cm,cm->c", gy2[r], xc[r]) * inv_std[r]  # no dy * xc temporary

        for_each_row_block(sums, gy2)
        gx = None
        if needs[0] and self.training:
            # dx = scale * (dy - sum_dy/m - x_hat * sum_dy_xhat/m), as dy*scale + xc*k_xc + k_1, in place in xc
            sum_dy, sum_dy_xhat = self._all_sum(gbeta, ggamma)  # gbeta, ggamma stay this rank's (see above)
            k_xc, k_1 = -scale * inv_std * sum_dy_xhat / self.m, -scale * sum_dy / self.m

            def dx(r):
                xc[r] *= k_xc[r, None]
                xc[r] += k_1[r, None]
                xc[r] += gy2[r] * scale[r, None]

            for_each_row_block(dx, xc)
            gx = from_channel_rows(xc, self.shape)
        elif needs[0]:
            gx = gy * scale.reshape((1, -1) + (1,) * (gy.ndim - 2))
        return gx, ggamma, gbeta

    # --- CuPy, training mode: the same formulas as fused kernels (minires/gpu_kernels.py)

    def forward_gpu(self, x, weight, bias):
        if not self.training:  # eval mode is not in the training loop: the generic code
            return self.forward(x, weight, bias)
        self.shape = x.shape
        return from_channel_rows(gpu_kernels.batch_norm_forward(self, channel_rows(x), weight, bias), x.shape)

    def backward_gpu(self, gy):
        if not self.training:
            return self.backward(gy)
        gx2, ggamma, gbeta = gpu_kernels.batch_norm_backward(self, channel_rows(gy))
        return (None if gx2 is None else from_channel_rows(gx2, self.shape)), ggamma, gbeta


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
    eps, momentum = batch_norm_settings("batch_norm", eps, momentum)
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
