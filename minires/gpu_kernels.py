"""Every fused CuPy kernel of minires, each behind a pure function: arrays in, arrays out.

The rule (Chainer's): on CuPy data the engine calls an op's ``forward_gpu``/``backward_gpu``,
which default to the reference ``forward``/``backward``; an op overrides them only where a
fused kernel pays, and calls the functions here with arrays and settings: a kernel never reads
or writes the op, which keeps its own state (and its statistics: ``ops/norm.py``). So the op
files read as the NumPy math and every GPU special case can be reviewed here, side by side.
The CPU fast paths live beside this file, in ``minires/cpu_kernels/``.

Why fuse: CuPy launches one kernel per array operation, and at CIFAR sizes each launch (a few
microseconds of GPU work, more of Python) costs more than its arithmetic. Fused, a ResNet-20
training step went from 42.1 to 30.6 ms on an H100.

Kernels are built on first use (``functools.cache``), so importing minires never needs CuPy.
Each computes exactly the formulas of the NumPy code it replaces (tests/test_fused_kernels.py
compares them with float64 references on both devices).
"""
import functools
from types import SimpleNamespace

from .backend import get_array_module

# ----------------------------------------------------------------------------- batch norm
# Training mode on the (C, m) channel rows (minires/ops/norm.py, which keeps the statistics and
# calls these): the reductions stay library calls and the elementwise work around them is
# fused: y in one kernel, dx in one, the running statistics and 1/sqrt(var + eps) in one each
# (about 18 launches forward and 16 backward in the NumPy-style code). Eval mode keeps the
# reference: it is not in the training loop.


def batch_norm_inv_std(var, eps):
    """1 / sqrt(var + eps): three CuPy ops (add, sqrt, divide) in one launch."""
    return batch_norm_kernels().inv_std(var, var.dtype.type(eps))


def batch_norm_update_running_stats(mean, var, momentum, m, running_mean, running_var):
    """Both running statistics updated in place as in ``BatchNorm._update_running_stats``
    (var unbiased by m / (m - 1)): six CuPy ops in one launch."""
    cast = mean.dtype.type
    mom = cast(momentum)
    batch_norm_kernels().update_running_stats(mean, var, mom, cast(mom * m / (m - 1)), running_mean, running_var)


def batch_norm_normalize(x2, mean, inv_std, weight, bias):
    """y = gamma * (x - mean) * inv_std + beta on channel rows x2 (C, m), one pass; y is laid out
    as x2. ``weight``/``bias`` (C,) or None."""
    cast = x2.dtype.type
    y2 = get_array_module(x2).empty_like(x2)
    batch_norm_kernels().normalize(x2, mean[:, None], inv_std[:, None], cast(1) if weight is None else weight[:, None],
                                   cast(0) if bias is None else bias[:, None], y2)
    return y2


def batch_norm_dx(gy2, x2, mean, inv_std, weight, sum_dy, sum_dy_xhat, m):
    """Training-mode dx on channel rows, one pass: gamma * inv_std * (dy - sum_dy/m - x_hat * sum_dy_xhat/m)
    with x_hat = (x - mean) * inv_std; dx is laid out as x2, as on the CPU."""
    cast = gy2.dtype.type
    gx2 = get_array_module(x2).empty_like(x2)
    batch_norm_kernels().batch_norm_dx(gy2, x2, mean[:, None], inv_std[:, None],
                                       cast(1) if weight is None else weight[:, None],
                                       sum_dy[:, None], sum_dy_xhat[:, None], cast(m), gx2)
    return gx2


@functools.cache
def batch_norm_kernels():
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


# ----------------------------------------------------------------------------- ReLU and the add
# Both write into ``empty_like`` of their input, which keeps its memory layout for certain:
# channel-major activations stay channel-major for the conv and batch norm that read them next.

def relu(x):
    """max(x, 0), laid out as x."""
    y = get_array_module(x).empty_like(x)
    get_array_module(x).maximum(x, 0, out=y)
    return y


def add(a, b):
    """a + b for equally shaped arrays, laid out as a."""
    out = get_array_module(a).empty_like(a)
    get_array_module(a).add(a, b, out=out)
    return out


def relu_backward(gy, y):
    """dx = dy * [y > 0] in one kernel instead of two (compare, then multiply). The result
    takes gy's memory layout (empty_like keeps it), so a channel-major gradient stays
    channel-major for the batch norm or conv backward that reads it next."""
    gx = get_array_module(gy).empty_like(gy)
    relu_backward_kernel()(gy, y, gx)
    return gx


@functools.cache
def relu_backward_kernel():
    """dx = dy * [y > 0] as one CuPy elementwise kernel, built on first use (no CuPy import
    at module load). Multiplying by the 0/1 mask, as the NumPy path does, keeps the results
    identical on both devices (a NaN in dy stays NaN; a negative dy masked out gives -0)."""
    import cupy as cp

    return cp.ElementwiseKernel("T gy, T y", "T gx", "gx = gy * (T)(y > 0)", "minires_relu_backward")


# ----------------------------------------------------------------------------- SGD
# ``SGD.step`` (minires/optim/sgd.py) on CuPy: its NumPy form, ``sgd.sgd_update``, launches 6
# kernels per parameter for the paper's SGD (momentum and weight decay), 8 with Nesterov;
# ResNet-20 has 65 parameter arrays, ResNet-56 170.

def sgd_update(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov):
    """``optim.sgd.sgd_update`` on CuPy arrays, one launch per parameter: ``param`` updated in
    place, the momentum buffer returned (a new one on the first step, when ``buf`` is None;
    None without momentum)."""
    cast = param.dtype.type
    plain, with_momentum = sgd_kernels()
    if momentum == 0:
        plain(grad, cast(lr), cast(weight_decay), param)
        return None
    first_step = buf is None
    if first_step:  # PyTorch's first-step rule (b = g, no dampening) is the kernel's: it fills the new buffer
        buf = get_array_module(param).empty_like(param)
    with_momentum(grad, cast(lr), cast(weight_decay), cast(momentum), cast(1 - dampening), nesterov, first_step,
                  param, buf)
    return buf


# The update in CUDA, written once: the weight decay, the momentum buffer, the step.
_SGD_DECAY = "T d_p = weight_decay != 0 ? grad + weight_decay * param : grad;\n"
_SGD_MOMENTUM = """
buf = first_step ? d_p : momentum * buf + one_minus_dampening * d_p;
d_p = nesterov ? d_p + momentum * buf : buf;
"""
_SGD_STEP = "param = param - lr * d_p;\n"


@functools.cache
def sgd_kernels():
    """SGD's update as CuPy elementwise kernels: (without momentum, with momentum).

    Built on first use, so importing minires never needs CuPy. Each kernel reads g and p (and
    b) once and writes p (and b) once: the whole update of ``SGD``'s docstring, one launch per
    parameter. ``T`` is the parameter's dtype; the hyper-parameters arrive as scalars cast to
    it. ``weight_decay != 0`` is tested as in ``sgd_update``, so a zero decay never touches the
    gradient (0 * inf would be NaN).
    """
    import cupy as cp

    plain = cp.ElementwiseKernel("T grad, T lr, T weight_decay", "T param", _SGD_DECAY + _SGD_STEP, "minires_sgd")
    with_momentum = cp.ElementwiseKernel(
        "T grad, T lr, T weight_decay, T momentum, T one_minus_dampening, bool nesterov, bool first_step",
        "T param, T buf", _SGD_DECAY + _SGD_MOMENTUM + _SGD_STEP, "minires_sgd_momentum")
    return plain, with_momentum
