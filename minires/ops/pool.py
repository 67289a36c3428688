"""Pooling: max and average over kh x kw windows, and global average pooling.

Both use the same strided window view as conv's im2col; backward adds each kernel
offset's share back with one strided slice-add (kh*kw vectorised adds).
"""
from ..backend import get_array_module
from ..engine import Function, as_tensor
from .conv import _pair, conv_output_size


def _windows(padded, kh, kw, sh, sw, oh, ow):
    """(N, C, Hp, Wp) -> a view (N, C, OH, OW, kh, kw) of every pooling window."""
    xp = get_array_module(padded)
    s_n, s_c, s_h, s_w = padded.strides
    n, c = padded.shape[:2]
    return xp.lib.stride_tricks.as_strided(
        padded, shape=(n, c, oh, ow, kh, kw), strides=(s_n, s_c, s_h * sh, s_w * sw, s_h, s_w)
    )


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

    def _geometry(self, x):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        h, w = x.shape[2:]
        return kh, kw, sh, sw, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)

    def _scatter(self, share):
        """Sum share(i, j) (N, C, OH, OW) back into the input positions of offset (i, j)."""
        xp = get_array_module(self.like)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        n, c, h, w = self.in_shape
        oh, ow = self.out_hw
        gpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=self.like.dtype)
        for i in range(kh):
            for j in range(kw):
                gpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += share(i, j)
        return gpad[:, :, ph:ph + h, pw:pw + w]


class MaxPool2d(_Pool2d):
    """y = max over each window;   dx = dy routed to the position of the window's maximum."""

    def forward(self, x):
        kh, kw, sh, sw, oh, ow = self._geometry(x)
        ph, pw = self.padding
        windows = _windows(_pad(x, ph, pw, -float("inf")), kh, kw, sh, sw, oh, ow)
        flat = windows.reshape(x.shape[0], x.shape[1], oh, ow, kh * kw)
        self.argmax = flat.argmax(axis=-1)
        self.in_shape, self.out_hw, self.like = x.shape, (oh, ow), x
        return get_array_module(x).take_along_axis(flat, self.argmax[..., None], axis=-1)[..., 0]

    def backward(self, gy):
        kw = self.kernel[1]
        return self._scatter(lambda i, j: gy * (self.argmax == i * kw + j))


class AvgPool2d(_Pool2d):
    """y = mean over each window (padding zeros counted, as PyTorch's count_include_pad=True);
    dx = dy / (kh*kw) added to every position of the window."""

    def forward(self, x):
        kh, kw, sh, sw, oh, ow = self._geometry(x)
        ph, pw = self.padding
        windows = _windows(_pad(x, ph, pw, 0), kh, kw, sh, sw, oh, ow)
        self.in_shape, self.out_hw, self.like = x.shape, (oh, ow), x
        return windows.mean(axis=(4, 5))

    def backward(self, gy):
        share = gy / gy.dtype.type(self.kernel[0] * self.kernel[1])
        return self._scatter(lambda i, j: share)


def _pool_args(name, x, kernel_size, stride, padding):
    x = as_tensor(x)
    if x.ndim != 4:
        raise ValueError(f"{name}: input x must be 4-D (N, C, H, W), got shape {x.shape}")
    kernel = _pair(name, "kernel_size", kernel_size, 1)
    stride = kernel if stride is None else _pair(name, "stride", stride, 1)
    padding = _pair(name, "padding", padding, 0)
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
