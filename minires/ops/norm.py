"""Batch normalization (Ioffe & Szegedy, 2015), as ``torch.nn.functional.batch_norm``."""
from .. import gpu_kernels
from .._checks import batch_norm_settings
from ..backend import device_of, get_array_module
from ..cpu_kernels import norm as norm_kernels
from ..engine import Function, Tensor, as_tensor


def channel_rows(x):
    """x (N, C, ...) as a (C, M) matrix, one row per channel, M = N * (spatial size).

    A free view when x is channel-major (C, N, H, W) memory, as the reference conv's outputs
    are, or channels-last (N, H, W, C) memory, as the CPU conv kernels' are; otherwise one copy.
    Per-channel statistics are then reductions along a row, and every per-channel constant
    broadcasts as a (C, 1) column (contiguous rows for channel-major memory; the CPU kernels read
    channels-last memory their own way, ``cpu_kernels/norm.py``).
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
    reduction along a row and every per-channel constant a (C, 1) column. ``forward``/``backward``
    are the reference, in the stages notebook 03 derives; they save x_hat and 1/std. The fast
    paths keep the same statistics and running-statistics update (``_batch_mean``,
    ``_batch_var``, ``_update_running_stats``: written once, here) and do the passes between
    them with kernels: on NumPy data the worker threads take blocks of channels, or of pixels
    for channels-last activations (``minires/cpu_kernels/norm.py``); on CuPy data the
    elementwise work is fused (``minires/gpu_kernels.py``); both save x and the mean instead of x_hat (x is kept by the
    graph anyway; x_hat would be one more activation per layer).
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

    # --- the statistics, written once for every path

    def _batch_mean(self, row_sums, count):
        """(mean, m): the whole batch's per-channel mean from this rank's row sums and row length."""
        total, m = self._all_sum(row_sums, count)
        return total / m, m

    def _batch_var(self, centred_sum_sq, m):
        """The whole batch's biased per-channel variance from this rank's sums of (x - mean)^2."""
        (total,) = self._all_sum(centred_sum_sq)
        return total / m

    def _update_running_stats(self, mean, var, m):
        """running <- (1 - momentum) * running + momentum * batch, in place (var unbiased: * m/(m-1))."""
        if self.running_mean is None:
            return
        mom = mean.dtype.type(self.momentum)
        self.running_mean *= 1 - mom
        self.running_mean += mom * mean
        self.running_var *= 1 - mom
        self.running_var += (mom * m / (m - 1)) * var

    def _running_statistics(self):
        """Eval mode's (mean, var): copies of the running statistics (a train-mode call before
        backward would change them in place)."""
        return self.running_mean.copy(), self.running_var.copy()

    def _save(self, shape, weight, inv_std, m):
        self.running_mean = self.running_var = None  # backward needs neither
        self.shape, self.weight, self.inv_std, self.m = shape, weight, inv_std, m

    def _inv_std(self, var):
        xp = get_array_module(var)
        return 1 / xp.sqrt(var + var.dtype.type(self.eps))

    # --- the reference

    def forward(self, x, weight, bias):
        x2 = channel_rows(x)                                          # (C, m)
        m = None
        if self.training:
            mean, m = self._batch_mean(x2.sum(axis=1), x2.shape[1])
            xc = x2 - mean[:, None]
            var = self._batch_var((xc * xc).sum(axis=1), m)
            self._update_running_stats(mean, var, m)
        else:
            mean, var = self._running_statistics()
            xc = x2 - mean[:, None]
        inv_std = self._inv_std(var)
        self.x_hat = xc * inv_std[:, None]                            # x_hat = (x - mean) / sqrt(var + eps)
        y2 = self.x_hat if weight is None else self.x_hat * weight[:, None]
        if bias is not None:
            y2 = y2 + bias[:, None]                                   # y = gamma * x_hat + beta
        self._save(x.shape, weight, inv_std, m)
        return from_channel_rows(y2, x.shape)

    def backward(self, gy):
        gy2, x_hat, m = channel_rows(gy), self.x_hat, self.m
        need_x, need_gamma, need_beta = self.needs_input_grad
        scale = self.inv_std if self.weight is None else self.inv_std * self.weight  # dy/dx_hat * dx_hat/dx
        dx_from_batch = need_x and self.training                      # training-mode dx needs both sums
        gbeta = gy2.sum(axis=1) if need_beta or dx_from_batch else None            # dbeta = sum(dy)
        ggamma = (gy2 * x_hat).sum(axis=1) if need_gamma or dx_from_batch else None  # dgamma = sum(dy * x_hat)
        gx = None
        if dx_from_batch:
            sum_dy, sum_dy_xhat = self._all_sum(gbeta, ggamma)  # gbeta, ggamma stay this rank's (see above)
            gx2 = scale[:, None] * (gy2 - sum_dy[:, None] / m - x_hat * (sum_dy_xhat[:, None] / m))
            gx = from_channel_rows(gx2, self.shape)
        elif need_x:
            gx = gy * scale.reshape((1, -1) + (1,) * (gy.ndim - 2))
        return gx, ggamma if need_gamma else None, gbeta if need_beta else None

    # --- NumPy: passes over blocks of channels on the worker threads (minires/cpu_kernels/norm.py)

    def forward_cpu(self, x, weight, bias):
        x2 = channel_rows(x)
        m = None
        if self.training:
            mean, m = self._batch_mean(norm_kernels.row_sums(x2), x2.shape[1])
            xc, sum_sq = norm_kernels.centre(x2, mean)
            var = self._batch_var(sum_sq, m)
            self._update_running_stats(mean, var, m)
        else:
            mean, var = self._running_statistics()
            xc, _ = norm_kernels.centre(x2, mean, with_sum_sq=False)
        inv_std = self._inv_std(var)
        self.x2, self.mean = x2, mean
        self._save(x.shape, weight, inv_std, m)
        y2 = norm_kernels.scale_shift_(xc, inv_std if weight is None else inv_std * weight, bias)
        return from_channel_rows(y2, x.shape)

    def backward_cpu(self, gy):
        gy2, inv_std = norm_kernels.laid_out_as(channel_rows(gy), self.x2), self.inv_std
        need_x, need_gamma, need_beta = self.needs_input_grad
        scale = inv_std if self.weight is None else inv_std * self.weight
        dx_from_batch = self.training and need_x  # training-mode dx needs both sums
        gbeta, ggamma, xc = norm_kernels.grad_sums(gy2, self.x2, self.mean, inv_std,
                                                   dx_from_batch or need_beta, dx_from_batch or need_gamma)
        gx = None
        if dx_from_batch:
            sum_dy, sum_dy_xhat = self._all_sum(gbeta, ggamma)
            k_xc, k_1 = -scale * inv_std * sum_dy_xhat / self.m, -scale * sum_dy / self.m
            gx = from_channel_rows(norm_kernels.input_grad_(xc, gy2, k_xc, k_1, scale), self.shape)
        elif need_x:
            gx = gy * scale.reshape((1, -1) + (1,) * (gy.ndim - 2))
        return gx, ggamma, gbeta

    # --- CuPy, training mode: the elementwise passes fused (minires/gpu_kernels.py)

    def forward_gpu(self, x, weight, bias):
        if not self.training:  # eval mode is not in the training loop: the reference
            return self.forward(x, weight, bias)
        xp, x2 = get_array_module(x), channel_rows(x)
        # The reductions stay library calls: hand-written ReductionKernels over only 16-64 rows
        # (one per channel) measured up to 2.7x slower on an H100 than the generic code.
        mean, m = self._batch_mean(x2.sum(axis=1), x2.shape[1])
        xc = x2 - mean[:, None]
        var = self._batch_var(xp.einsum("cm,cm->c", xc, xc), m)
        if self.running_mean is not None:
            gpu_kernels.batch_norm_update_running_stats(mean, var, self.momentum, m, self.running_mean, self.running_var)
        inv_std = gpu_kernels.batch_norm_inv_std(var, self.eps)
        self.x2, self.mean = x2, mean
        self._save(x.shape, weight, inv_std, m)
        return from_channel_rows(gpu_kernels.batch_norm_normalize(x2, mean, inv_std, weight, bias), x.shape)

    def backward_gpu(self, gy):
        if not self.training:
            return self.backward(gy)
        xp, gy2, inv_std = get_array_module(gy), channel_rows(gy), self.inv_std
        gbeta = gy2.sum(axis=1)                                                     # sum(dy)
        ggamma = xp.einsum("cm,cm->c", gy2, self.x2 - self.mean[:, None]) * inv_std  # sum(dy * x_hat)
        gx = None
        if self.needs_input_grad[0]:
            sum_dy, sum_dy_xhat = self._all_sum(gbeta, ggamma)  # gbeta, ggamma stay this rank's
            gx2 = gpu_kernels.batch_norm_dx(gy2, self.x2, self.mean, inv_std, self.weight, sum_dy, sum_dy_xhat, self.m)
            gx = from_channel_rows(gx2, self.shape)
        return gx, ggamma, gbeta


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
