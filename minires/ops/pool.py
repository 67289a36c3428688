"""Pooling: max and average over kh x kw windows, and global average pooling.

Both take their windows from conv's im2col (a strided view, one copy) and give the gradient
back with conv's col2im (one strided slice-add per kernel offset).
"""
from .._checks import pair
from ..backend import get_array_module
from ..engine import Function, as_tensor
from .conv import col2im, conv_output_size, im2col


def _pad(x, ph, pw, value):
    xp = get_array_module(x)
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    out = xp.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


class _Pool2d(Function):
    def __init__(self, kernel, stride, padding):
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def _windows(self, x, pad_value):
        """x (N, C, H, W) -> (C, kh*kw, N, OH, OW): every window, by conv's im2col.

        im2col reads a channel-major (C, N, Hp, Wp) array: the transposed view of the padded x.
        """
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        n, c, h, w = x.shape
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        self.in_shape, self.out_hw = x.shape, (oh, ow)
        padded = _pad(x, ph, pw, pad_value).transpose(1, 0, 2, 3)
        return im2col(padded, kh, kw, sh, sw, oh, ow).reshape(c, kh * kw, n, oh, ow)

    def _unwindow(self, cols):
        """The adjoint of ``_windows``: (C, kh*kw, N, OH, OW) summed back into (N, C, H, W),
        by conv's col2im (one strided slice-add per kernel offset)."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        n, c, h, w = self.in_shape
        oh, ow = self.out_hw
        gpad = col2im(cols, (c, n, h + 2 * ph, w + 2 * pw), kh, kw, sh, sw, oh, ow)
        return gpad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)


class MaxPool2d(_Pool2d):
    """y = max over each window;   dx = dy routed to the position of the window's maximum."""

    def forward(self, x):
        windows = self._windows(x, -float("inf"))
        self.argmax = windows.argmax(axis=1)  # (C, N, OH, OW): which offset won
        return get_array_module(x).take_along_axis(windows, self.argmax[:, None], axis=1)[:, 0].transpose(1, 0, 2, 3)

    def backward(self, gy):
        xp = get_array_module(gy)
        offsets = xp.arange(self.kernel[0] * self.kernel[1]).reshape(1, -1, 1, 1, 1)
        winner = self.argmax[:, None] == offsets                         # (C, kh*kw, N, OH, OW)
        return self._unwindow(gy.transpose(1, 0, 2, 3)[:, None] * winner)


class AvgPool2d(_Pool2d):
    """y = mean over each window (padding zeros counted, as PyTorch's count_include_pad=True);
    dx = dy / (kh*kw) added to every position of the window."""

    def forward(self, x):
        return self._windows(x, 0).mean(axis=1).transpose(1, 0, 2, 3)

    def backward(self, gy):
        xp = get_array_module(gy)
        k = self.kernel[0] * self.kernel[1]
        share = gy.transpose(1, 0, 2, 3)[:, None] / gy.dtype.type(k)   # (C, 1, N, OH, OW)
        return self._unwindow(xp.broadcast_to(share, (share.shape[0], k) + share.shape[2:]))


def _pool_args(name, x, kernel_size, stride, padding):
    x = as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"{name}: input x must be 4-D (N, C, H, W), got shape {x.shape}")
    kernel = pair(name, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else pair(name, "stride", stride, 1)
    padding = pair(name, "padding", padding, 0)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise ValueError(f"{name}: padding {padding} must be at most half the kernel size {kernel}")
    h, w = x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]
    if kernel[0] > h or kernel[1] > w:
        raise ValueError(f"{name}: kernel {kernel} is larger than the padded input {h}x{w} (x shape {x.shape})")
    return x, kernel, stride, padding


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max pooling as ``torch.nn.functional.max_pool2d`` (stride defaults to kernel_size)."""
    x, kernel, stride, padding = _pool_args("max_pool2d", x, kernel_size, stride, padding)
    return MaxPool2d(kernel, stride, padding)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Average pooling as ``torch.nn.functional.avg_pool2d`` (count_include_pad=True)."""
    x, kernel, stride, padding = _pool_args("avg_pool2d", x, kernel_size, stride, padding)
    return AvgPool2d(kernel, stride, padding)(x)


def adaptive_avg_pool2d(x, output_size):
    """As ``torch.nn.functional.adaptive_avg_pool2d``; minires supports output_size 1 (global pooling)."""
    if output_size not in (1, (1, 1), [1, 1]):
        raise ValueError(f"adaptive_avg_pool2d: only output_size=1 is supported, got {output_size!r}")
    x = as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: input x must be 4-D (N, C, H, W), got shape {x.shape}")
    from .reduce import mean
    return mean(x, dim=(2, 3), keepdim=True)


def global_avg_pool2d(x):
    """Mean over H and W: (N, C, H, W) -> (N, C), the pooling before a ResNet's classifier."""
    x = as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool2d: input x must be 4-D (N, C, H, W), got shape {x.shape}")
    from .reduce import mean
    return mean(x, dim=(2, 3))
