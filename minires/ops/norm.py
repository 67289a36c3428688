"""Batch normalization (Ioffe & Szegedy, 2015), as ``torch.nn.functional.batch_norm``."""
from ..backend import device_of, get_array_module
from ..engine import Function, Tensor, as_tensor


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
    """

    def __init__(self, training, momentum, eps, running_mean, running_var):
        self.training, self.momentum, self.eps = training, momentum, eps
        self.running_mean, self.running_var = running_mean, running_var

    def forward(self, x, weight, bias):
        xp = get_array_module(x)
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, -1) + (1,) * (x.ndim - 2)  # broadcast a (C,) vector against x
        eps = x.dtype.type(self.eps)
        if self.training:
            mean = x.mean(axis=axes)
            xc = x - mean.reshape(bshape)
            var = xp.mean(xc * xc, axis=axes)
            inv_std = 1 / xp.sqrt(var + eps)
            x_hat = xc * inv_std.reshape(bshape)
            if self.running_mean is not None:
                m, mom = x.size // x.shape[1], x.dtype.type(self.momentum)
                self.running_mean *= 1 - mom
                self.running_mean += mom * mean
                self.running_var *= 1 - mom
                self.running_var += (mom * m / (m - 1)) * var
        else:
            inv_std = 1 / xp.sqrt(self.running_var + eps)
            x_hat = (x - self.running_mean.reshape(bshape)) * inv_std.reshape(bshape)
        self.running_mean = self.running_var = None  # backward needs neither
        self.x_hat, self.inv_std, self.weight, self.axes, self.bshape = x_hat, inv_std, weight, axes, bshape
        y = x_hat * weight.reshape(bshape) if weight is not None else x_hat.copy()
        if bias is not None:
            y += bias.reshape(bshape)
        return y

    def backward(self, gy):
        x_hat, axes, bshape = self.x_hat, self.axes, self.bshape
        gbeta = gy.sum(axis=axes)
        ggamma = (gy * x_hat).sum(axis=axes)
        scale = self.inv_std if self.weight is None else self.inv_std * self.weight
        if self.training:
            m = gy.size // gy.shape[1]
            gx = (gy - (gbeta / m).reshape(bshape) - x_hat * (ggamma / m).reshape(bshape)) * scale.reshape(bshape)
        else:
            gx = gy * scale.reshape(bshape)
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


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalization over dimension 1 of x (N, C, ...), as ``torch.nn.functional.batch_norm``.

    ``running_mean``/``running_var`` (shape (C,), arrays or Tensors, or None) are updated in
    place when ``training``; in eval mode they normalise x.
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
    return BatchNorm(training, momentum, eps, rm, rv)(x, *params)
