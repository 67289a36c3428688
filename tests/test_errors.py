"""Bad input gets a clear, specific error: the exception type, and a message that names the
op and the offending shapes or values."""
import re

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import Tensor
from minires.backend import gpu_available

GPU_SKIP = pytest.mark.skipif(not gpu_available(), reason="no GPU: CuPy is not installed or no CUDA device answers")


def t(*shape, dtype=np.float64, requires_grad=False):
    return Tensor(np.ones(shape, dtype=dtype), requires_grad=requires_grad)


# ------------------------------------------------------------------- conv2d
def test_conv2d_channel_mismatch():
    with pytest.raises(ValueError, match=r"conv2d: input x has 3 channels \(shape \(1, 3, 5, 5\)\) but weight expects 2"):
        F.conv2d(t(1, 3, 5, 5), t(4, 2, 3, 3))


@pytest.mark.parametrize("shape", [(3, 5, 5), (1, 1, 3, 5, 5)])
def test_conv2d_wrong_input_ndim(shape):
    with pytest.raises(ValueError, match=re.escape(f"conv2d: input x must be 4-D (N, C, H, W), got shape {shape}")):
        F.conv2d(t(*shape), t(2, shape[-3], 3, 3))


def test_conv2d_wrong_weight_ndim():
    with pytest.raises(ValueError, match=r"conv2d: weight must be 4-D .*got shape \(2, 3, 3\)"):
        F.conv2d(t(1, 3, 5, 5), t(2, 3, 3))


@pytest.mark.parametrize("stride", [0, -1, (1, 0)])
def test_conv2d_stride_must_be_positive(stride):
    with pytest.raises(ValueError, match=re.escape(f"conv2d: stride must be >= 1, got {stride}")):
        F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), stride=stride)


@pytest.mark.parametrize("padding", [-1, (0, -2)])
def test_conv2d_negative_padding(padding):
    with pytest.raises(ValueError, match=re.escape(f"conv2d: padding must be >= 0, got {padding}")):
        F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), padding=padding)


@pytest.mark.parametrize("stride", [1.5, (1, 2, 3), True])
def test_conv2d_stride_must_be_ints(stride):
    with pytest.raises(TypeError, match="conv2d: stride must be an int or a pair of ints"):
        F.conv2d(t(1, 1, 5, 5), t(1, 1, 3, 3), stride=stride)


def test_conv2d_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"conv2d: kernel 7x3 is larger than the padded input 6x7 .*\(1, 1, 4, 5\)"):
        F.conv2d(t(1, 1, 4, 5), t(1, 1, 7, 3), padding=1)


def test_conv2d_bad_bias_shape():
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(4,\), got \(3,\)"):
        F.conv2d(t(1, 2, 5, 5), t(4, 2, 3, 3), t(3))


# ------------------------------------------------------------------- pooling
@pytest.mark.parametrize("fn", [F.max_pool2d, F.avg_pool2d])
def test_pool_wrong_ndim(fn):
    name = fn.__name__
    with pytest.raises(ValueError, match=rf"{name}: input x must be 4-D \(N, C, H, W\), got shape \(3, 4, 4\)"):
        fn(t(3, 4, 4), 2)


@pytest.mark.parametrize("fn", [F.max_pool2d, F.avg_pool2d])
def test_pool_stride_and_kernel_must_be_positive(fn):
    name = fn.__name__
    with pytest.raises(ValueError, match=rf"{name}: stride must be >= 1, got 0"):
        fn(t(1, 1, 4, 4), 2, stride=0)
    with pytest.raises(ValueError, match=rf"{name}: kernel_size must be >= 1, got 0"):
        fn(t(1, 1, 4, 4), 0)


@pytest.mark.parametrize("fn", [F.max_pool2d, F.avg_pool2d])
def test_pool_negative_or_too_large_padding(fn):
    name = fn.__name__
    with pytest.raises(ValueError, match=rf"{name}: padding must be >= 0, got -1"):
        fn(t(1, 1, 4, 4), 2, padding=-1)
    with pytest.raises(ValueError, match=rf"{name}: padding \(2, 2\) must be at most half the kernel size \(3, 3\)"):
        fn(t(1, 1, 4, 4), 3, padding=2)


@pytest.mark.parametrize("fn", [F.max_pool2d, F.avg_pool2d])
def test_pool_kernel_larger_than_padded_input(fn):
    name = fn.__name__
    with pytest.raises(ValueError, match=rf"{name}: kernel \(5, 2\) is larger than the padded input 4x3"):
        fn(t(1, 1, 4, 3), (5, 2))


def test_global_pools_wrong_ndim_and_output_size():
    with pytest.raises(ValueError, match=r"global_avg_pool2d: input x must be 4-D .*\(2, 3\)"):
        F.global_avg_pool2d(t(2, 3))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: only output_size=1 is supported, got 2"):
        F.adaptive_avg_pool2d(t(1, 1, 4, 4), 2)


# ------------------------------------------------------------------- batch_norm
def test_batch_norm_wrong_ndim():
    with pytest.raises(ValueError, match=r"batch_norm: input x must have at least 2 dimensions .*got shape \(5,\)"):
        F.batch_norm(t(5), None, None, training=True)


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1, 1)])
def test_batch_norm_one_value_per_channel_in_training(shape):
    shown = re.escape(str(shape))
    msg = rf"batch_norm: expected more than 1 value per channel when training, got input shape {shown}"
    with pytest.raises(ValueError, match=msg):
        F.batch_norm(t(*shape), np.zeros(3), np.ones(3), training=True)
    F.batch_norm(t(*shape), np.zeros(3), np.ones(3), training=False)  # fine in eval mode


def test_batch_norm_bad_running_stats():
    with pytest.raises(ValueError, match=r"batch_norm: running_mean must have shape \(3,\) for input shape \(2, 3\), got \(4,\)"):
        F.batch_norm(t(2, 3), np.zeros(4), np.ones(3), training=True)
    with pytest.raises(TypeError, match="batch_norm: running_var has dtype float32 but x has float64"):
        F.batch_norm(t(2, 3), np.zeros(3), np.ones(3, np.float32), training=True)
    with pytest.raises(ValueError, match="batch_norm: eval mode .* needs running_mean and running_var"):
        F.batch_norm(t(2, 3), None, None, training=False)
    with pytest.raises(ValueError, match="batch_norm: give both running_mean and running_var"):
        F.batch_norm(t(2, 3), np.zeros(3), None, training=True)


def test_batch_norm_bad_affine_params():
    with pytest.raises(ValueError, match=r"batch_norm: weight must have shape \(3,\) for input shape \(2, 3, 2, 2\), got \(2,\)"):
        F.batch_norm(t(2, 3, 2, 2), None, None, t(2), training=True)
    with pytest.raises(TypeError, match="batch_norm: bias has dtype float32 but x has float64"):
        F.batch_norm(t(2, 3), None, None, None, t(3, dtype=np.float32), training=True)


@pytest.mark.parametrize("kw,msg", [(dict(momentum=1.5), "momentum must be in"), (dict(eps=0.0), "eps must be > 0")])
def test_batch_norm_bad_hyperparameters(kw, msg):
    with pytest.raises(ValueError, match=f"batch_norm: {msg}"):
        F.batch_norm(t(2, 3), None, None, training=True, **kw)


# ------------------------------------------------------------------- cross_entropy / log_softmax
@pytest.mark.parametrize("shape", [(4,), (2, 3, 4)])
def test_cross_entropy_wrong_ndim(shape):
    shown = re.escape(str(shape))
    with pytest.raises(ValueError, match=rf"cross_entropy: logits must be 2-D \(N, C\), got shape {shown}"):
        F.cross_entropy(t(*shape), np.zeros(shape[0], dtype=np.int64))


@pytest.mark.parametrize("target,lo,hi", [([0, 3], 0, 3), ([-1, 2], -1, 2)])
def test_cross_entropy_target_out_of_range(target, lo, hi):
    with pytest.raises(ValueError, match=rf"cross_entropy: target values must be in \[0, 2\], got min {lo} and max {hi}"):
        F.cross_entropy(t(2, 3), np.array(target))


@pytest.mark.parametrize("target", [np.array([0.0, 1.0]), np.array([True, False]), [0.0, 1.0]])
def test_cross_entropy_float_targets(target):
    with pytest.raises(TypeError, match="cross_entropy: target must hold integer class indices, got dtype (float64|bool)"):
        F.cross_entropy(t(2, 3), target)


@pytest.mark.parametrize("target_shape", [(3,), (2, 1), ()])
def test_cross_entropy_target_wrong_shape(target_shape):
    shown = re.escape(str(target_shape))
    with pytest.raises(ValueError, match=rf"cross_entropy: target must have shape \(2,\) for logits \(2, 3\), got {shown}"):
        F.cross_entropy(t(2, 3), np.zeros(target_shape, dtype=np.int64))


def test_cross_entropy_bad_reduction():
    with pytest.raises(ValueError, match="cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.cross_entropy(t(2, 3), np.array([0, 1]), reduction="avg")


def test_log_softmax_dim_out_of_range():
    with pytest.raises(IndexError, match=r"log_softmax: dim 2 is out of range for shape \(2, 3\)"):
        F.log_softmax(t(2, 3), 2)


# ------------------------------------------------------------------- tensors and autograd
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_requires_grad_on_integer_tensor(dtype):
    name = np.dtype(dtype).name
    with pytest.raises(TypeError, match=rf"only floating-point tensors can require gradients, got dtype {name} \(shape \(2,\)\)"):
        Tensor(np.zeros(2, dtype=dtype), requires_grad=True)
    with pytest.raises(TypeError, match=f"got dtype {name}"):
        Tensor(np.zeros(2, dtype=dtype)).requires_grad_()


def test_requires_grad_on_python_ints():
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients, got dtype int64"):
        Tensor([1, 2, 3], requires_grad=True)


def test_non_scalar_backward_without_gradient():
    msg = r"backward\(\): grad can be implicitly created only for one-element outputs.*shape \(2, 3\)"
    with pytest.raises(RuntimeError, match=msg):
        (t(2, 3, requires_grad=True) * 2.0).backward()


def test_backward_gradient_of_wrong_shape_or_dtype():
    y = t(2, 3, requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"backward\(\): grad has shape \(6,\) but the tensor has shape \(2, 3\)"):
        y.backward(np.ones(6))
    with pytest.raises(TypeError, match="backward\\(\\): grad has dtype float32 but the tensor has dtype float64"):
        y.backward(np.ones((2, 3), np.float32))


@pytest.mark.parametrize("op,name", [(lambda a, b: a + b, "add"), (lambda a, b: a * b, "mul"), (lambda a, b: a - b, "sub"),
                                     (lambda a, b: a / b, "div"), (lambda a, b: a**b, "pow"), (lambda a, b: a @ b, "matmul")])
def test_mismatched_dtypes_raise_instead_of_upcasting(op, name):
    a, b = t(2, 2, dtype=np.float32), t(2, 2, dtype=np.float64)
    msg = re.escape(f"{name}: dtypes differ (float32 with shape (2, 2) and float64 with shape (2, 2))")
    with pytest.raises(TypeError, match=msg):
        op(a, b)
    with pytest.raises(TypeError, match=f"{name}: dtypes differ"):
        op(a, np.ones((2, 2)))  # a float64 NumPy array is not a Python number: no silent conversion


@pytest.mark.parametrize("fn,args,name", [
    (F.conv2d, lambda: (t(1, 1, 3, 3, dtype=np.float32), t(1, 1, 2, 2)), "conv2d: weight has dtype float64 but x has float32"),
    (F.linear, lambda: (t(2, 3, dtype=np.float32), t(4, 3)), "linear: weight has dtype float64 but x has float32"),
    (F.linear, lambda: (t(2, 3), t(4, 3), t(4, dtype=np.float32)), "linear: bias has dtype float32 but x has float64"),
])
def test_mismatched_dtypes_in_layers(fn, args, name):
    with pytest.raises(TypeError, match=name):
        fn(*args())


def test_broadcast_failure():
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\) cannot be broadcast together"):
        t(2, 3) + t(4)
    with pytest.raises(ValueError, match=r"mul: shapes \(2, 3\) and \(3, 2\) cannot be broadcast together"):
        t(2, 3) * t(3, 2)


def test_matmul_and_linear_shape_errors():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(2, 3\) do not align \(3 != 2\)"):
        t(2, 3) @ t(2, 3)
    with pytest.raises(ValueError, match=r"matmul: both operands need at least 2 dimensions .*\(3,\) and \(3, 2\)"):
        t(3) @ t(3, 2)
    with pytest.raises(ValueError, match=r"linear: input x has 5 features \(shape \(2, 5\)\) but weight expects 3"):
        F.linear(t(2, 5), t(4, 3))
    with pytest.raises(ValueError, match=r"linear: bias must have shape \(4,\), got \(3,\)"):
        F.linear(t(2, 3), t(4, 3), t(3))


@pytest.mark.parametrize("shape", [(4, 2), (7,), (-1, -1), (2, -2), (0, -1), (5, -1)])
def test_reshape_to_an_impossible_shape(shape):
    shown = re.escape(str(tuple(shape)))
    with pytest.raises(ValueError, match=rf"reshape: cannot view a tensor of shape \(2, 3\) \(6 elements\) as {shown}"):
        F.reshape(t(2, 3), shape)


@pytest.mark.parametrize("pad,error,msg", [
    ((1,), ValueError, "expected an even number of values"),
    ((1, 1, 1, 1, 1, 1), ValueError, r"at most 2 per dimension of shape \(2, 3\)"),
    ((1, -1), ValueError, r"widths must be non-negative .*got \(1, -1\)"),
    ((1.5, 1), TypeError, r"widths must be integers, got \(1.5, 1\)"),
    ((True, 1), TypeError, r"widths must be integers, got \(True, 1\)"),
])
def test_bad_pad_widths(pad, error, msg):
    with pytest.raises(error, match=f"pad: .*{msg}"):
        F.pad(t(2, 3), pad)


def test_pad_accepts_numpy_integer_widths():
    assert F.pad(t(2, 3), (np.int64(1), np.int64(2))).shape == (2, 6)


def test_dim_errors():
    with pytest.raises(IndexError, match="sum: dim 2 is out of range for a tensor with 2 dimensions"):
        F.sum(t(2, 3), 2)
    with pytest.raises(ValueError, match=r"mean: dim \(1, -1\) repeats a dimension"):
        F.mean(t(2, 3), (1, -1))
    with pytest.raises(IndexError, match=r"transpose: dim 2 is out of range for shape \(2, 3\)"):
        F.transpose(t(2, 3), 0, 2)
    with pytest.raises(ValueError, match=r"permute: dims .* are not a permutation of the 2 dimensions of shape \(2, 3\)"):
        F.permute(t(2, 3), (0, 0))


def test_permute_dim_out_of_range():
    """permute((0, 5)) on a 2-D tensor must not wrap 5 to 1 (PyTorch raises IndexError)."""
    with pytest.raises((IndexError, ValueError), match=r"permute: .*5.*\(2, 3\)"):
        F.permute(t(2, 3), (0, 5))


def test_flatten_dim_out_of_range():
    """flatten(x, 0, 5) on a 2-D tensor must not wrap 5 to 1 (PyTorch raises IndexError)."""
    with pytest.raises((IndexError, ValueError), match=r"flatten: .*5.*\(2, 3\)"):
        F.flatten(t(2, 3), 0, 5)


def test_getitem_errors():
    with pytest.raises(IndexError, match=r"getitem: index 5 is invalid for a tensor of shape \(2, 3\)"):
        t(2, 3)[5]
    with pytest.raises(ValueError, match=r"getitem: slice steps must be positive \(got -1\) for shape \(2, 3\)"):
        t(2, 3)[::-1]


def test_bad_device_names():
    with pytest.raises(ValueError, match="device must be 'cpu' or 'gpu', got 'tpu'"):
        t(2).to("tpu")
    if not gpu_available():
        with pytest.raises(RuntimeError, match="device 'gpu' requested but no GPU is usable"):
            t(2).to("gpu")


# ------------------------------------------------------------------- devices
@pytest.mark.gpu
@GPU_SKIP
def test_mismatched_devices_on_a_real_gpu():
    cpu, gpu = t(2, 3), t(2, 3).to("gpu")
    with pytest.raises(RuntimeError, match="Add: expected all tensors on the same device, got input 0 on cpu, input 1 on gpu"):
        cpu + gpu
    with pytest.raises(RuntimeError, match="Conv2d: expected all tensors on the same device"):
        F.conv2d(t(1, 1, 3, 3).to("gpu"), t(1, 1, 2, 2))
    with pytest.raises(RuntimeError, match="cross_entropy: target is on cpu but logits are on gpu"):
        F.cross_entropy(t(2, 3).to("gpu"), np.array([0, 1]))
    with pytest.raises(RuntimeError, match="batch_norm: running_mean is on cpu but input x is on gpu"):
        F.batch_norm(t(2, 3).to("gpu"), np.zeros(3), np.ones(3), training=True)
    with pytest.raises(RuntimeError, match="backward\\(\\): grad is on cpu but the tensor is on gpu"):
        (t(2, requires_grad=True).to("gpu") * 2.0).backward(np.ones(2))


def _pretend_on_gpu(monkeypatch, module, fake_arrays):
    """Make ``module.device_of`` report 'gpu' for the given arrays (by identity): exercises the
    device checks' error paths on a machine without a GPU. The real test is the gpu one above."""
    real = module.device_of
    ids = {id(a) for a in fake_arrays}
    monkeypatch.setattr(module, "device_of", lambda arr: "gpu" if id(arr) in ids else real(arr))


def test_mismatched_devices_error_path_without_gpu(monkeypatch):
    a, b = t(2, 3), t(2, 3)
    _pretend_on_gpu(monkeypatch, minires.engine, [b.data])
    msg = "Add: expected all tensors on the same device, got input 0 on cpu, input 1 on gpu; use .to"
    with pytest.raises(RuntimeError, match=msg):
        a + b
    x, w = t(1, 1, 3, 3), t(1, 1, 2, 2)
    _pretend_on_gpu(monkeypatch, minires.engine, [w.data])
    with pytest.raises(RuntimeError, match="Conv2d: expected all tensors on the same device, got input 0 on cpu, input 1 on gpu"):
        F.conv2d(x, w)


def test_target_and_stats_device_error_paths_without_gpu(monkeypatch):
    target, rm = np.array([0, 1]), np.zeros(3)
    _pretend_on_gpu(monkeypatch, minires.ops.loss, [target])
    with pytest.raises(RuntimeError, match="cross_entropy: target is on gpu but logits are on cpu"):
        F.cross_entropy(t(2, 3), target)
    _pretend_on_gpu(monkeypatch, minires.ops.norm, [rm])
    with pytest.raises(RuntimeError, match="batch_norm: running_mean is on gpu but input x is on cpu"):
        F.batch_norm(t(2, 3), rm, np.ones(3), training=True)


def test_backward_gradient_on_another_device_error_path_without_gpu(monkeypatch):
    g = np.ones(2)
    _pretend_on_gpu(monkeypatch, minires.engine, [g])
    with pytest.raises(RuntimeError, match="backward\\(\\): grad is on gpu but the tensor is on cpu"):
        (t(2, requires_grad=True) * 2.0).backward(g)



def test_mean_of_an_integer_tensor_raises():
    with pytest.raises(TypeError, match="mean: needs a floating-point tensor, got dtype int64"):
        F.mean(minires.Tensor(np.arange(6).reshape(2, 3)))


def test_sum_rejects_a_bool_dim():
    with pytest.raises(IndexError, match="sum: dim True is out of range"):
        F.sum(t(2, 3), dim=True)
