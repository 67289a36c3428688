"""log_softmax and cross-entropy, numerically stable for logits of any size."""
from ..backend import device_of, get_array_module, is_capturing
from ..engine import Function, Tensor, as_tensor


class LogSoftmax(Function):
    """y = x - max(x) - log(sum(exp(x - max(x))))   along ``dim`` (stable for logits of +-1000);
    dx = dy - softmax(x) * sum(dy),   with softmax(x) = exp(y)."""

    def __init__(self, dim):
        self.dim = dim

    def forward(self, x):
        xp = get_array_module(x)
        shifted = x - x.max(axis=self.dim, keepdims=True)
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=self.dim, keepdims=True))
        return self.y

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.dim, keepdims=True)


class CrossEntropy(Function):
    """loss = -(1/N) sum_n log_softmax(x)[n, t_n]   (reduction 'mean'; 'sum' drops 1/N,
    'none' keeps one loss per sample);   dx = (softmax(x) - onehot(t)) * dloss  (/ N for 'mean')."""

    def __init__(self, target, reduction):
        self.target, self.reduction = target, reduction

    def forward(self, x):
        xp = get_array_module(x)
        shifted = x - x.max(axis=1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        self.logp = logp
        picked = -xp.take_along_axis(logp, self.target[:, None], axis=1)[:, 0]
        if self.reduction == "none":
            return picked
        return picked.mean() if self.reduction == "mean" else picked.sum()

    def backward(self, gy):
        xp = get_array_module(gy)
        n = self.logp.shape[0]
        gx = xp.exp(self.logp)
        gx[xp.arange(n), self.target] -= 1
        if self.reduction == "none":
            return gx * gy[:, None]
        return gx * (gy / n if self.reduction == "mean" else gy)


def log_softmax(x, dim):
    """log(softmax(x)) along ``dim``, as ``torch.nn.functional.log_softmax``."""
    x = as_tensor(x)
    if not -x.ndim <= dim < x.ndim:
        raise IndexError(f"log_softmax: dim {dim} is out of range for shape {x.shape}")
    return LogSoftmax(dim % x.ndim)(x)


def cross_entropy(logits, target, reduction="mean"):
    """Cross-entropy of logits (N, C) against integer class targets (N,), as
    ``torch.nn.functional.cross_entropy``; ``target`` is an integer array or Tensor."""
    logits = as_tensor(logits)
    target = target.data if isinstance(target, Tensor) else target
    xp = get_array_module(logits.data)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be 2-D (N, C), got shape {logits.shape}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not hasattr(target, "dtype"):
        target = xp.asarray(target)
    if device_of(target) != logits.device:
        raise RuntimeError(f"cross_entropy: target is on {device_of(target)} but logits are on {logits.device}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype {target.dtype}")
    if tuple(target.shape) != logits.shape[:1]:
        raise ValueError(f"cross_entropy: target must have shape ({logits.shape[0]},) for logits {logits.shape}, got {tuple(target.shape)}")
    # The range check reads values back to the host; a CUDA graph capture cannot, and checks
    # its targets before they are copied in (minires.cuda_graph).
    if target.size and not is_capturing(xp) and (int(target.min()) < 0 or int(target.max()) >= logits.shape[1]):
        raise ValueError(
            f"cross_entropy: target values must be in [0, {logits.shape[1] - 1}], "
            f"got min {int(target.min())} and max {int(target.max())}"
        )
    return CrossEntropy(target.astype(xp.int64, copy=False), reduction)(logits)
