"""Weight initialisation, as ``torch.nn.init``: functions that fill a Tensor *in place*.

He (Kaiming) initialisation, which the ResNet paper uses (it cites He et al. 2015,
"Delving Deep into Rectifiers", [13]): for a layer y = W x followed by a ReLU, keeping the
variance of the responses constant from layer to layer needs

    (1/2) * n * Var[w] = 1,   i.e.   w ~ N(0, std^2)  with  std = sqrt(2 / n)

where n is the *fan-in* k*k*c (kernel size squared times input channels; Eq. 10 of [13],
the forward-propagation condition) or the *fan-out* k*k*d (output channels; Eq. 14, the
backward condition). [13] shows either alone keeps a deep net trainable.

Reproducibility: every random function takes ``generator=`` (a ``numpy.random.Generator``).
Without one, a module-level default generator is used; ``manual_seed(seed)`` reseeds it (as
``torch.manual_seed``). Numbers are drawn on the CPU in the tensor's own dtype (float32
stays float32, no float64 temporaries) and then written into the tensor's array, on
whatever device it lives.
"""
import math

import numpy as np

from ..backend import device_of, to_device
from ..engine import Tensor

_default_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed the default generator used when no ``generator=`` is given; returns it."""
    global _default_generator
    _default_generator = np.random.default_rng(seed)
    return _default_generator


def default_generator():
    """The generator used by init functions (and layers) when none is given."""
    return _default_generator


def _check(name, tensor):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name}: expected a minires Tensor or Parameter, got {type(tensor).__name__}")
    if not np.issubdtype(tensor.dtype, np.floating):
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {tensor.dtype}")


def _draw_dtype(tensor):
    # NumPy's generators draw float32 and float64 directly; other floats go through float32.
    return tensor.dtype if tensor.dtype in (np.float32, np.float64) else np.dtype(np.float32)


def _write(tensor, values):
    """Copy CPU ``values`` into the tensor's array, in place (same array, same device)."""
    if device_of(tensor.data) != "cpu":
        values = to_device(values, device_of(tensor.data))
    tensor.data[...] = values.astype(tensor.dtype, copy=False)
    return tensor


def _generator(name, generator):
    if generator is None:
        return _default_generator
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"{name}: generator must be a numpy.random.Generator or None, got {type(generator).__name__}")
    return generator


def calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight: (in * k*k, out * k*k) for a conv (out, in, kh, kw),
    (in, out) for a linear weight (out, in)."""
    if tensor.ndim < 2:
        raise ValueError(
            f"calculate_fan_in_and_fan_out: needs a tensor with at least 2 dimensions, got shape {tensor.shape}")
    receptive = 1
    for s in tensor.shape[2:]:
        receptive *= s
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """The factor that keeps the variance of responses constant through ``nonlinearity``:
    sqrt(2) for ReLU (it zeroes half the values), 1 for linear layers, as PyTorch."""
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(
        f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; "
        "use 'relu', 'leaky_relu', 'linear', 'conv2d', 'sigmoid' or 'tanh'"
    )


def _fan(name, tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{name}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with samples of N(mean, std^2)."""
    _check("normal_", tensor)
    rng, dt = _generator("normal_", generator), _draw_dtype(tensor)
    values = rng.standard_normal(tensor.shape, dtype=dt) * dt.type(std) + dt.type(mean)
    return _write(tensor, values)


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with samples of U(a, b)."""
    _check("uniform_", tensor)
    if not a < b:
        raise ValueError(f"uniform_: need a < b, got a={a}, b={b}")
    rng, dt = _generator("uniform_", generator), _draw_dtype(tensor)
    values = rng.random(tensor.shape, dtype=dt) * dt.type(b - a) + dt.type(a)
    return _write(tensor, values)


def constant_(tensor, val):
    """Fill with the value ``val``."""
    _check("constant_", tensor)
    tensor.data[...] = val
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0)


def ones_(tensor):
    return constant_(tensor, 1)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="relu", generator=None):
    """He et al. (2015) normal initialisation: N(0, std^2), std = gain / sqrt(fan).

    For a ReLU (gain sqrt(2)) that is std = sqrt(2 / n), n = fan-in k*k*c_in (``mode='fan_in'``,
    Eq. 10 of [13], the default here and in PyTorch) or fan-out k*k*c_out (``mode='fan_out'``,
    Eq. 14, what torchvision's ResNets use). ``a`` is the negative slope for leaky_relu.
    """
    _check("kaiming_normal_", tensor)
    fan = _fan("kaiming_normal_", tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator=generator)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He initialisation with a uniform law of the same variance: U(-bound, bound),
    bound = gain * sqrt(3 / fan). With ``a=sqrt(5)`` it is PyTorch's default for conv/linear
    weights, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    _check("kaiming_uniform_", tensor)
    fan = _fan("kaiming_uniform_", tensor, mode)
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound, generator=generator)


__all__ = [
    "manual_seed", "default_generator", "calculate_fan_in_and_fan_out", "calculate_gain",
    "normal_", "uniform_", "constant_", "zeros_", "ones_", "kaiming_normal_", "kaiming_uniform_",
]
