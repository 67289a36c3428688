"""The GPU's fused kernels (batch norm training forward/backward, ReLU backward, the SGD update)
against independent float64 references, at sizes larger than the hypothesis tests draw.

Every test takes the ``device`` fixture: on 'cpu' it checks the NumPy code, on 'gpu' the CuPy
``ElementwiseKernel`` paths that replace it (all in ``minires/gpu_kernels.py``, taken through the
ops' ``forward_gpu``/``backward_gpu`` and ``SGD.step``). The SGD test also compares the
GPU with the CPU step by step.
"""
import numpy as np
import pytest

import minires.functional as F
from minires import Tensor
from minires.backend import device_of, gpu_available, to_device, to_numpy
from minires.optim import SGD
from opcheck import rng_for, tensor

# ----------------------------------------------------------------------------- batch norm


def channel_major(x, device="cpu"):
    """x (N, C, H, W) on ``device`` as an NCHW view of (C, N, H, W) memory, the layout conv
    outputs have (made on the device: copying a strided NumPy array to the GPU may reorder it)."""
    return to_device(np.ascontiguousarray(x.transpose(1, 0, 2, 3)), device).transpose(1, 0, 2, 3)


def bn_reference(x, w, b, gy, eps):
    """Training-mode batch norm in float64, written per channel: y and (dx, dgamma, dbeta)."""
    x, gy = x.astype(np.float64), gy.astype(np.float64)
    y, gx = np.empty_like(x), np.empty_like(x)
    c = x.shape[1]
    gw, gb = np.empty(c), np.empty(c)
    for ch in range(c):
        xc, dy = x[:, ch], gy[:, ch]
        mean, var = xc.mean(), xc.var()
        x_hat = (xc - mean) / np.sqrt(var + eps)
        gamma = 1.0 if w is None else float(w[ch])
        beta = 0.0 if b is None else float(b[ch])
        y[:, ch] = gamma * x_hat + beta
        gw[ch], gb[ch] = (dy * x_hat).sum(), dy.sum()
        gx[:, ch] = gamma / np.sqrt(var + eps) * (dy - dy.mean() - x_hat * (dy * x_hat).mean())
    return y, gx, gw, gb


@pytest.mark.parametrize("layout", ["channel_major", "nchw"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no_affine"])
def test_batch_norm_training_float32_matches_float64_reference(device, layout, affine):
    rng = rng_for(11)
    shape = (16, 6, 12, 10)  # m = 1920 values per channel
    scale = rng.uniform(0.5, 3, size=(1, 6, 1, 1))
    x = (rng.standard_normal(shape) * scale + 5 * rng.standard_normal((1, 6, 1, 1))).astype(np.float32)
    gy = rng.standard_normal(shape).astype(np.float32)
    if layout == "channel_major":
        x_d, gy_d = channel_major(x, device), channel_major(gy, device)
    else:
        x_d, gy_d = to_device(x, device), to_device(gy, device)
    w = rng.standard_normal(6).astype(np.float32) if affine else None
    b = rng.standard_normal(6).astype(np.float32) if affine else None
    rm0, rv0 = rng.standard_normal(6).astype(np.float32), rng.uniform(0.5, 2, 6).astype(np.float32)
    rm, rv = to_device(rm0.copy(), device), to_device(rv0.copy(), device)
    xt = Tensor(x_d, requires_grad=True)
    wt = None if w is None else tensor(w, device, requires_grad=True)
    bt = None if b is None else tensor(b, device, requires_grad=True)

    y = F.batch_norm(xt, rm, rv, wt, bt, training=True, momentum=0.25, eps=1e-3)
    y.backward(gy_d)

    y_ref, gx_ref, gw_ref, gb_ref = bn_reference(x, w, b, gy, 1e-3)
    assert y.dtype == np.float32 and y.device == device and xt.grad.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), y_ref, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(to_numpy(xt.grad), gx_ref, rtol=1e-4, atol=2e-5)
    if affine:
        np.testing.assert_allclose(to_numpy(wt.grad), gw_ref, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(to_numpy(bt.grad), gb_ref, rtol=1e-4, atol=1e-3)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(to_numpy(rm), 0.75 * rm0 + 0.25 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(to_numpy(rv), 0.75 * rv0 + 0.25 * var, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(xt.numpy(), x)         # the input is never written to
    np.testing.assert_array_equal(to_numpy(gy_d), gy)    # nor the upstream gradient


def test_batch_norm_output_is_channel_major_like_a_conv_output(device):
    """Forward output and input gradient are (C, N, H, W) memory, as a conv's output, so the
    next conv's backward reads dy without a transpose copy."""
    rng = rng_for(12)
    x = Tensor(channel_major(rng.standard_normal((4, 3, 5, 5)).astype(np.float32), device), requires_grad=True)
    y = F.batch_norm(x, None, None, training=True)
    # The op's own backward as the engine chose it, the fast path of this device (a leaf's .grad is
    # a C-ordered copy, whatever the op returned).
    gx, _, _ = getattr(y.grad_fn, f"backward_{y.grad_fn.path}")(channel_major(rng.standard_normal((4, 3, 5, 5)).astype(np.float32), device))
    for arr in (y.data, gx):
        assert arr.transpose(1, 0, 2, 3).flags.c_contiguous


# ----------------------------------------------------------------------------- ReLU backward

def test_relu_backward_is_dy_times_the_mask_exactly(device):
    """dx = dy * [y > 0] to the bit: NaN in dy stays NaN where y > 0 and where y == 0
    (0 * NaN), masked negative values give -0, float64 stays float64."""
    rng = rng_for(13)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((5, 4, 6, 6)).astype(dtype)
        x[0, 0, 0, :3] = 0  # relu(0) = 0: masked
        dy = rng.standard_normal((5, 4, 6, 6)).astype(dtype)
        dy[0, 0, 0, 0] = np.nan      # x == 0 there: 0 * NaN = NaN, as the NumPy product
        dy[1, 1, 1, 1] = np.inf
        x[1, 1, 1, 1] = 1.0          # y > 0: inf passes through
        expected = dy * (np.maximum(x, 0) > 0)
        t = tensor(x, device, requires_grad=True)
        y = F.relu(t)
        gx = y.grad_fn.backward(channel_major(dy, device))  # a channel-major dy, as from a conv
        if device == "gpu":  # the fused kernel writes into an array laid out like dy
            assert gx.transpose(1, 0, 2, 3).flags.c_contiguous
        y.backward(to_device(dy, device))
        got = to_numpy(t.grad)
        np.testing.assert_array_equal(to_numpy(gx), expected)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, expected)
        numbers = ~np.isnan(expected)  # (a NaN's sign bit is not specified)
        np.testing.assert_array_equal(np.signbit(got[numbers]), np.signbit(expected[numbers]))
        assert np.signbit(got[numbers]).any()  # the -0 case was exercised


# ----------------------------------------------------------------------------- SGD

def sgd_reference(start, grads, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD's update in float64, one step per gradient (None: no gradient, skipped)."""
    p, buf, history = start.astype(np.float64), None, []
    for g in grads:
        if g is not None:
            d = g.astype(np.float64) + weight_decay * p
            if momentum:
                buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
                d = d + momentum * buf if nesterov else buf
            p = p - lr * d
        history.append(p.copy())
    return history


class Param:
    def __init__(self, data):
        self.data, self.grad = data, None


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, weight_decay=0.05),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, dampening=0.3),
    dict(lr=0.1, momentum=0.9, weight_decay=0.05),
    dict(lr=0.1, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.5, weight_decay=0.05, nesterov=True),
    dict(lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.05),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hyper", SGD_CONFIGS, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
def test_sgd_matches_pytorch_formula_in_float64(device, hyper, dtype):
    """Five steps (the second without a gradient: skipped, buffer kept) against the float64
    formula; exact buffer rule on the first step, dampening only afterwards."""
    rng = rng_for(14)
    start = rng.standard_normal((7, 5)).astype(dtype)
    grads = [rng.standard_normal((7, 5)).astype(dtype) for _ in range(5)]
    grads[1] = None
    p = Param(to_device(start.copy(), device))
    opt = SGD([p], **hyper)
    expected = sgd_reference(start, grads, **hyper)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for g, want in zip(grads, expected):
        p.grad = None if g is None else to_device(g.copy(), device)
        opt.step()
        assert p.data.dtype == dtype and device_of(p.data) == device
        if g is not None:
            np.testing.assert_array_equal(to_numpy(p.grad), g)  # the gradient is never modified
        np.testing.assert_allclose(to_numpy(p.data), want, **tol)
    if hyper.get("momentum"):
        buf = opt.state[0]["momentum_buffer"]
        assert device_of(buf) == device and buf.dtype == dtype
    else:
        assert opt.state == {}


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA device")
@pytest.mark.parametrize("hyper", SGD_CONFIGS, ids=lambda h: ",".join(f"{k}={v}" for k, v in h.items()))
def test_sgd_gpu_equals_cpu_within_float32_rounding(hyper):
    """The fused GPU update and the NumPy update agree step by step on float32 parameters
    (up to rounding: the GPU contracts a*b + c into one fused multiply-add) and buffers."""
    rng = rng_for(15)
    start = rng.standard_normal((64, 33)).astype(np.float32)
    cpu, gpu = Param(start.copy()), Param(to_device(start.copy(), "gpu"))
    opt_cpu, opt_gpu = SGD([cpu], **hyper), SGD([gpu], **hyper)
    for _ in range(4):
        g = rng.standard_normal(start.shape).astype(np.float32)
        cpu.grad, gpu.grad = g, to_device(g, "gpu")
        opt_cpu.step()
        opt_gpu.step()
        np.testing.assert_allclose(to_numpy(gpu.data), cpu.data, rtol=1e-6, atol=1e-6)
        if hyper.get("momentum"):
            np.testing.assert_allclose(to_numpy(opt_gpu.state[0]["momentum_buffer"]),
                                       opt_cpu.state[0]["momentum_buffer"], rtol=1e-6, atol=1e-6)


def test_sgd_on_a_model_with_tensor_parameters(device):
    """Tensor parameters with autograd gradients: one step moves them as the formula says."""
    rng = rng_for(16)
    w0 = rng.standard_normal((3, 4)).astype(np.float32)
    w = Tensor(to_device(w0.copy(), device), requires_grad=True)
    opt = SGD([w], lr=0.5, momentum=0.9, weight_decay=0.1, nesterov=True)
    (w * w).sum().backward()  # dL/dw = 2w
    opt.step()
    d = 2 * w0.astype(np.float64) + 0.1 * w0  # first step: b = d, nesterov: d + 0.9 b
    np.testing.assert_allclose(w.numpy(), w0 - 0.5 * (d + 0.9 * d), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- the rule

@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA device")
def test_gpu_data_takes_the_fused_kernels(monkeypatch):
    """The engine's rule (forward_gpu/backward_gpu on CuPy data) really reaches every kernel
    above: a training step of BN + ReLU and an SGD step each call their fused path once."""
    from minires import gpu_kernels

    calls = []
    names = ("batch_norm_update_running_stats", "batch_norm_inv_std", "batch_norm_normalize", "batch_norm_dx",
             "relu", "relu_backward", "sgd_update")
    for name in names:
        original = getattr(gpu_kernels, name)
        monkeypatch.setattr(gpu_kernels, name, lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a))
    rng = rng_for(3)
    x = Tensor(to_device(rng.standard_normal((4, 3, 5, 5)).astype(np.float32), "gpu"), requires_grad=True)
    w = Tensor(to_device(np.ones(3, np.float32), "gpu"), requires_grad=True)
    y = F.relu(F.batch_norm(x, to_device(np.zeros(3, np.float32), "gpu"), to_device(np.ones(3, np.float32), "gpu"),
                            w, None, training=True))
    y.backward(to_device(rng.standard_normal((4, 3, 5, 5)).astype(np.float32), "gpu"))
    SGD([w], lr=0.1, momentum=0.9).step()
    assert sorted(calls) == sorted(names)
