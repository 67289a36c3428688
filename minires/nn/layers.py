"""The layers: thin ``Module`` wrappers that own parameters and call ``minires.functional``.

Names, arguments, default initialisations and ``repr`` follow ``torch.nn``. Layers with
random weights also take ``generator=`` (a ``numpy.random.Generator``) so that a network
can be built reproducibly.

Each layer also knows, without computing anything, the shape of its output
(``output_shape(input_shape)``) and, for convolutions and linear layers, its number of
multiply-adds (``macs(input_shape)``): ``minires.summary`` uses them for a shape-only pass.
"""
import math

import numpy as np

from .. import functional as F
from .._checks import batch_norm_settings, check_int, pair
from ..ops.conv import conv_output_size
from . import init
from .module import Module, Parameter


def _weight_and_bias(module, weight_shape, bias, generator):
    """Create ``module.weight`` (and ``module.bias``, or register it as None) in float32 and give
    them PyTorch's default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both (that is
    what ``kaiming_uniform_(a=sqrt(5))`` amounts to for the weight)."""
    module.weight = Parameter(np.empty(weight_shape, dtype=np.float32))
    if bias:
        module.bias = Parameter(np.empty(weight_shape[0], dtype=np.float32))
    else:
        module.register_parameter("bias", None)
    module.reset_parameters(generator)


def _reset_like_pytorch(module, generator):
    init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
    if module.bias is not None:
        bound = 1 / math.sqrt(init.calculate_fan_in_and_fan_out(module.weight)[0])
        init.uniform_(module.bias, -bound, bound, generator=generator)


def _check_4d(layer, shape):
    if len(shape) != 4:
        raise ValueError(f"{layer}: expected a 4-D input (N, C, H, W), got shape {tuple(shape)}")


class Conv2d(Module):
    """2-D convolution, as ``torch.nn.Conv2d``: weight (out, in, kh, kw), bias (out,) or none.

    Default initialisation (PyTorch's): weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    fan_in = in_channels * kh * kw. The ResNets re-initialise their convs with He's normal law.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True, generator=None):
        super().__init__()
        self.in_channels = check_int("Conv2d", "in_channels", in_channels, minimum=1)
        self.out_channels = check_int("Conv2d", "out_channels", out_channels, minimum=1)
        self.kernel_size = pair("Conv2d", "kernel_size", kernel_size, 1)
        self.stride = pair("Conv2d", "stride", stride, 1)
        self.padding = pair("Conv2d", "padding", padding, 0)
        _weight_and_bias(self, (self.out_channels, self.in_channels) + self.kernel_size, bias, generator)

    def reset_parameters(self, generator=None):
        _reset_like_pytorch(self, generator)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)

    def output_shape(self, input_shape):
        _check_4d("Conv2d", input_shape)
        n, c, h, w = input_shape
        if c != self.in_channels:
            raise ValueError(f"Conv2d: expected {self.in_channels} input channels, got input shape {tuple(input_shape)}")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (n, self.out_channels, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw))

    def macs(self, input_shape):
        """Multiply-adds: one per weight (in * kh * kw of them) per output value."""
        n, o, oh, ow = self.output_shape(input_shape)
        kh, kw = self.kernel_size
        return n * o * oh * ow * self.in_channels * kh * kw

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Linear(Module):
    """y = x W^T + b, as ``torch.nn.Linear``: weight (out_features, in_features).

    Default initialisation (PyTorch's): weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, in_features, out_features, bias=True, generator=None):
        super().__init__()
        self.in_features = check_int("Linear", "in_features", in_features, minimum=1)
        self.out_features = check_int("Linear", "out_features", out_features, minimum=1)
        _weight_and_bias(self, (self.out_features, self.in_features), bias, generator)

    def reset_parameters(self, generator=None):
        _reset_like_pytorch(self, generator)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def output_shape(self, input_shape):
        if len(input_shape) < 1 or input_shape[-1] != self.in_features:
            raise ValueError(f"Linear: expected {self.in_features} input features, got input shape {tuple(input_shape)}")
        return tuple(input_shape[:-1]) + (self.out_features,)

    def macs(self, input_shape):
        """Multiply-adds: in_features per output value."""
        return math.prod(self.output_shape(input_shape)) * self.in_features

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class BatchNorm2d(Module):
    """Batch normalization over the channels of (N, C, H, W), as ``torch.nn.BatchNorm2d``.

    Parameters: weight (gamma) = 1, bias (beta) = 0. Buffers: running_mean = 0,
    running_var = 1, num_batches_tracked = 0. In training mode each forward normalises
    with the batch's statistics and updates the running ones (weight ``momentum``); in
    eval mode it normalises with the running ones.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.num_features = check_int("BatchNorm2d", "num_features", num_features, minimum=1)
        self.eps, self.momentum = batch_norm_settings("BatchNorm2d", eps, momentum)
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        c = self.num_features
        if affine:
            self.weight = Parameter(np.ones(c, dtype=np.float32))
            self.bias = Parameter(np.zeros(c, dtype=np.float32))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dtype=np.float32))
            self.register_buffer("running_var", np.ones(c, dtype=np.float32))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    process_group = None  # SyncBatchNorm's ranks; a plain BatchNorm2d normalises over its own batch

    def forward(self, x):
        _check_4d(type(self).__name__, x.shape)
        # Without running statistics there is nothing else to use: batch statistics always.
        use_batch_stats = self.training or not self.track_running_stats
        y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                         training=use_batch_stats, momentum=self.momentum, eps=self.eps,
                         # only training communicates: evaluation may run on one rank alone
                         process_group=self.process_group if self.training else None)
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1  # in place: the buffer stays the same array
        return y

    def output_shape(self, input_shape):
        _check_4d("BatchNorm2d", input_shape)
        if input_shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d: expected {self.num_features} channels, got input shape {tuple(input_shape)}")
        return tuple(input_shape)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class ReLU(Module):
    """max(x, 0) elementwise."""

    def forward(self, x):
        return F.relu(x)

    def output_shape(self, input_shape):
        return tuple(input_shape)


class Identity(Module):
    """Returns its input unchanged (a placeholder where a layer is optional)."""

    def forward(self, x):
        return x

    def output_shape(self, input_shape):
        return tuple(input_shape)


class _Pool2d(Module):
    _function = None

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self._kernel = pair(name, "kernel_size", kernel_size, 1)
        self._stride = pair(name, "stride", self.stride, 1)
        self._padding = pair(name, "padding", padding, 0)

    def forward(self, x):
        return self._function(x, self.kernel_size, self.stride, self.padding)

    def output_shape(self, input_shape):
        _check_4d(type(self).__name__, input_shape)
        n, c, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw) = self._kernel, self._stride, self._padding
        return (n, c, conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw))

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max over kh x kw windows, as ``torch.nn.MaxPool2d`` (stride defaults to kernel_size)."""

    _function = staticmethod(F.max_pool2d)


class AvgPool2d(_Pool2d):
    """Mean over kh x kw windows, as ``torch.nn.AvgPool2d`` (zero padding counted)."""

    _function = staticmethod(F.avg_pool2d)


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size; minires supports 1 (global average pooling):
    (N, C, H, W) -> (N, C, 1, 1)."""

    def __init__(self, output_size):
        super().__init__()
        if output_size not in (1, (1, 1), [1, 1]):
            raise ValueError(f"AdaptiveAvgPool2d: only output_size=1 (global pooling) is supported, got {output_size!r}")
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, 1)

    def output_shape(self, input_shape):
        _check_4d("AdaptiveAvgPool2d", input_shape)
        return tuple(input_shape[:2]) + (1, 1)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Flatten(Module):
    """Merge dimensions start_dim..end_dim (by default all but the batch dimension)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return F.flatten(x, self.start_dim, self.end_dim)

    def output_shape(self, input_shape):
        nd = len(input_shape)
        s, e = self.start_dim % nd, self.end_dim % nd
        return tuple(input_shape[:s]) + (math.prod(input_shape[s:e + 1]),) + tuple(input_shape[e + 1:])

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


__all__ = [
    "Conv2d", "Linear", "BatchNorm2d", "ReLU", "Identity", "MaxPool2d", "AvgPool2d",
    "AdaptiveAvgPool2d", "Flatten",
]
