"""Every fused CuPy kernel of minires, and the GPU paths of the ops that use them.

The rule (Chainer's): on CuPy data the engine calls an op's ``forward_gpu``/``backward_gpu``,
which default to ``forward``/``backward``; an op overrides them only where a fused kernel pays,
and its override is a one-line call into this file. So the op files read as the NumPy math
and every GPU special case can be reviewed here, side by side.

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
# Training mode on the (C, m) channel rows (minires/ops/norm.py): the reductions stay library
# calls and the elementwise work around them is fused: y in one kernel, dx in one, the running
# statistics and 1/sqrt(var + eps) in one each (about 18 launches forward and 16 backward in
# the NumPy-style code). Eval mode keeps the generic code: it is not in the training loop.


def batch_norm_forward(op, x2, weight, bias):
    """``BatchNorm.forward`` in training mode on channel rows ``x2`` (C, m); returns y (C, m)."""
    xp, k = get_array_module(x2), batch_norm_kernels()
    cast = x2.dtype.type
    # The reductions stay library calls: hand-written ReductionKernels over only 16-64 rows
    # (one per channel) measured up to 2.7x slower on an H100 than the generic code. With a
    # process group (SyncBatchNorm) the sums are over every rank's batch (op._all_sum).
    total, m = op._all_sum(x2.sum(axis=1), x2.shape[1])
    mean = total / cast(m)
    xc = x2 - mean[:, None]
    (sum_sq,) = op._all_sum(xp.einsum("cm,cm->c", xc, xc))
    var = sum_sq / cast(m)
    if op.running_mean is not None:
        mom = cast(op.momentum)
        k.update_running_stats(mean, var, mom, cast(mom * m / (m - 1)), op.running_mean, op.running_var)
    inv_std = k.inv_std(var, cast(op.eps))
    op.running_mean = op.running_var = None  # backward needs neither
    op.x2, op.mean, op.inv_std, op.weight, op.m = x2, mean, inv_std, weight, m
    y2 = xp.empty_like(x2)  # laid out as x2, as the NumPy path's x2 - mean is
    k.normalize(x2, mean[:, None], inv_std[:, None], cast(1) if weight is None else weight[:, None],
                cast(0) if bias is None else bias[:, None], y2)
    return y2


def batch_norm_backward(op, gy2):
    """``BatchNorm.backward`` in training mode on channel rows: (dx rows or None, dgamma, dbeta)."""
    xp, k = get_array_module(gy2), batch_norm_kernels()
    inv_std, cast = op.inv_std, gy2.dtype.type
    gbeta = gy2.sum(axis=1)                                               # sum(dy)
    ggamma = xp.einsum("cm,cm->c", gy2, op.x2 - op.mean[:, None]) * inv_std  # sum(dy * x_hat)
    gx2 = None
    if op.needs_input_grad[0]:
        sum_dy, sum_dy_xhat = op._all_sum(gbeta, ggamma)  # gbeta, ggamma stay this rank's
        gx2 = xp.empty_like(op.x2)  # laid out as x2, as on the CPU
        k.batch_norm_dx(gy2, op.x2, op.mean[:, None], inv_std[:, None],
                        cast(1) if op.weight is None else op.weight[:, None],
                        sum_dy[:, None], sum_dy_xhat[:, None], cast(op.m), gx2)
    return gx2, ggamma, gbeta


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


# ----------------------------------------------------------------------------- ReLU

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
# ``SGD._update_gpu`` (minires/optim/sgd.py): on CuPy the NumPy-style update launches 6 kernels
# per parameter for the paper's SGD (momentum and weight decay), 8 with Nesterov; ResNet-20 has
# 65 parameter arrays, ResNet-56 170.

@functools.cache
def sgd_kernels():
    """SGD's update as CuPy elementwise kernels: (without momentum, with momentum).

    Built on first use, so importing minires never needs CuPy. Each kernel reads g and p (and
    b) once and writes p (and b) once: the whole class-docstring update, one launch per
    parameter, where the NumPy-style code needs 6 to 8. ``T`` is the parameter's dtype; the
    hyper-parameters arrive as scalars cast to it. ``weight_decay != 0`` is tested as in
    ``SGD._update``, so a zero decay never touches the gradient (0 * inf would be NaN).
    """
    import cupy as cp

    plain = cp.ElementwiseKernel(
        "T grad, T lr, T weight_decay", "T param",
        """
        T d_p = weight_decay != 0 ? grad + weight_decay * param : grad;
        param = param - lr * d_p;
        """,
        "minires_sgd")
    with_momentum = cp.ElementwiseKernel(
        "T grad, T lr, T weight_decay, T momentum, T one_minus_dampening, bool nesterov, bool first_step",
        "T param, T buf",
        """
        T d_p = weight_decay != 0 ? grad + weight_decay * param : grad;
        buf = first_step ? d_p : momentum * buf + one_minus_dampening * d_p;
        d_p = nesterov ? d_p + momentum * buf : buf;
        param = param - lr * d_p;
        """,
        "minires_sgd_momentum")
    return plain, with_momentum
