"""The autograd engine itself: gradient accumulation, the graph's lifetime, no_grad,
detach, dtypes and devices, and deep graphs."""
import gc
import threading
import weakref

import numpy as np
import pytest

import minires
import minires.functional as F
import reference as ref
from minires import Function, Tensor, is_grad_enabled, no_grad
from minires.backend import device_of, to_device, to_numpy
from opcheck import TIGHT, assert_close, rng_for, tensor


def _grad_of(device, shape, seed=0):
    return to_device(rng_for(seed).standard_normal(shape), device)


# ------------------------------------------------------------------- accumulation
def test_fan_out_gradients_add_up(device):
    """y = f(x) + x, as in a residual block: x gets f'(x) * g + g."""
    x_np = rng_for(1).standard_normal((2, 3))
    x = tensor(x_np, device, requires_grad=True)
    y = F.exp(x) * 2.0 + x
    g = _grad_of(device, (2, 3), 2)
    y.backward(g)
    assert_close(x.grad, (2 * np.exp(x_np) + 1) * to_numpy(g), **TIGHT)


def test_fan_out_through_a_residual_block(device):
    """x -> conv -> relu -> conv, plus the identity shortcut; x's gradient is the sum of the branch and shortcut."""
    rng = rng_for(3)
    x_np, w1, w2 = rng.standard_normal((1, 2, 4, 4)), rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 2, 3, 3))
    x = tensor(x_np, device, requires_grad=True)
    branch = F.conv2d(F.relu(F.conv2d(x, tensor(w1, device), padding=1)), tensor(w2, device), padding=1)
    g = _grad_of(device, (1, 2, 4, 4), 4)
    (branch + x).backward(g)
    x2 = tensor(x_np, device, requires_grad=True)
    F.conv2d(F.relu(F.conv2d(x2, tensor(w1, device), padding=1)), tensor(w2, device), padding=1).backward(g)
    assert_close(x.grad, to_numpy(x2.grad) + to_numpy(g), **TIGHT)


def test_grads_accumulate_across_backward_calls(device):
    """As in PyTorch, .grad of a leaf accumulates until it is reset."""
    x = tensor(np.array([1.0, 2.0]), device, requires_grad=True)
    (x * 3.0).sum().backward()
    (x * x).sum().backward()
    assert_close(x.grad, 3.0 + 2 * np.array([1.0, 2.0]), **TIGHT)
    x.grad = None
    (x * 3.0).sum().backward()
    assert_close(x.grad, np.array([3.0, 3.0]), **TIGHT)


def test_leaf_grads_never_alias(device):
    """a + b passes the same upstream array to both inputs; each leaf must own its .grad,
    and neither may alias the gradient the caller passed in."""
    a = tensor(np.zeros(3), device, requires_grad=True)
    b = tensor(np.zeros(3), device, requires_grad=True)
    g = _grad_of(device, (3,))
    g_copy = to_numpy(g).copy()
    (a + b).backward(g)
    a.grad += 1
    assert_close(b.grad, g_copy, **TIGHT)
    assert_close(g, g_copy, **TIGHT)


@pytest.mark.parametrize("shapes", [((2, 3, 4), (3, 1)), ((4,), (2, 3, 4)), ((2, 1, 4), (1, 3, 1)), ((2, 3), ())])
def test_broadcasting_is_undone_in_backward(device, shapes):
    sa, sb = shapes
    rng = rng_for(5)
    a_np, b_np = rng.standard_normal(sa), rng.standard_normal(sb)
    a, b = tensor(a_np, device, requires_grad=True), tensor(b_np, device, requires_grad=True)
    out = a * b
    g = rng.standard_normal(out.shape)
    out.backward(to_device(g, device))
    assert a.grad.shape == sa and b.grad.shape == sb
    assert_close(a.grad, ref.sum_to_shape(g * np.broadcast_to(b_np, out.shape), sa), **TIGHT)
    assert_close(b.grad, ref.sum_to_shape(g * np.broadcast_to(a_np, out.shape), sb), **TIGHT)


# ------------------------------------------------------------------- which tensors get .grad
def test_only_leaves_that_require_grad_get_grad(device):
    w = tensor(np.array([2.0]), device, requires_grad=True)
    c = tensor(np.array([5.0]), device)  # a constant
    h = w * c
    (h * h).sum().backward()
    assert_close(w.grad, np.array([2 * 2.0 * 25.0]), **TIGHT)
    assert h.grad is None and not h.is_leaf
    assert c.grad is None and not c.requires_grad and c.is_leaf
    assert device_of(w.grad) == device


def test_requires_grad_propagates_only_from_inputs_that_need_it(device):
    a, b = tensor(np.ones(2), device), tensor(np.ones(2), device, requires_grad=True)
    assert not (a + a).requires_grad and (a + a).is_leaf
    assert (a + b).requires_grad and not (a + b).is_leaf


def test_backward_on_a_tensor_without_graph_raises(device):
    with pytest.raises(RuntimeError, match="does not require grad"):
        tensor(np.ones(()), device).backward()


# ------------------------------------------------------------------- graph lifetime
def test_graph_freed_after_backward(device):
    x = tensor(np.array([1.0, 2.0]), device, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward(device):
    x_np = np.array([1.0, 2.0])
    x = tensor(x_np, device, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()  # the graph is still there, then freed
    assert_close(x.grad, 2 * (np.exp(x_np) * (1 + x_np)), **TIGHT)
    with pytest.raises(RuntimeError, match="second time"):
        y.backward()


def test_backward_frees_saved_arrays_and_intermediates(device):
    """After backward the ops drop what they saved, so intermediate tensors can be collected."""
    x = tensor(np.ones((4, 4)), device, requires_grad=True)
    h = x.exp()
    alive = weakref.ref(h)
    y = (h * h).sum()
    del h
    y.backward(retain_graph=True)
    gc.collect()
    assert alive() is not None  # retained: still reachable from y's graph
    y.backward()
    gc.collect()
    assert alive() is None
    assert y._ctx.freed


def test_backward_through_a_partly_freed_graph_raises(device):
    """A tensor used by two losses: after the first backward frees the shared part, the second fails clearly."""
    x = tensor(np.ones(3), device, requires_grad=True)
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="second time.*Exp"):
        (h * 2.0).sum().backward()


def test_deep_chain_backpropagates_without_recursion_error(device):
    """ResNet-1202 is thousands of ops deep: backward must not recurse per op."""
    x = tensor(np.array([1.0]), device, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y + x * 1e-4
    y.sum().backward()
    assert_close(x.grad, np.array([1.0 + 5000 * 1e-4]), rtol=1e-12, atol=1e-12)
    del y
    gc.collect()


# ------------------------------------------------------------------- no_grad and detach
def test_no_grad_records_nothing(device):
    x = tensor(np.ones(3), device, requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = F.relu(x * 2.0) + x
    assert is_grad_enabled()
    assert not y.requires_grad and y.is_leaf and y._ctx is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_no_grad_as_decorator(device):
    x = tensor(np.ones(3), device, requires_grad=True)

    @no_grad()
    def f(t):
        assert not is_grad_enabled()
        return t * 3.0

    assert not f(x).requires_grad
    assert is_grad_enabled()


def test_no_grad_nests_and_restores_after_an_exception():
    with no_grad():
        with no_grad():
            pass
        assert not is_grad_enabled()
    assert is_grad_enabled()
    with pytest.raises(ZeroDivisionError):
        with no_grad():
            1 / 0
    assert is_grad_enabled()


def test_no_grad_decorator_survives_recursion():
    """The decorator's one no_grad object is entered again by a recursive call; leaving the
    outer call must still restore grad mode (torch.no_grad makes a fresh context per call)."""
    @no_grad()
    def depth(n):
        return 0 if n == 0 else 1 + depth(n - 1)

    try:
        assert depth(3) == 3
        assert is_grad_enabled(), "grad mode left disabled after a recursive @no_grad() function"
    finally:
        minires.engine._state.grad_enabled = True  # do not leak into other tests


def test_no_grad_is_per_thread():
    seen = []
    with no_grad():
        t = threading.Thread(target=lambda: seen.append(is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_detach(device):
    x_np = np.array([1.0, -2.0])
    x = tensor(x_np, device, requires_grad=True)
    d = x.detach()
    assert not d.requires_grad and d.is_leaf and d.data is x.data  # shares the data
    (x * d).sum().backward()  # d is a constant: the gradient is d, not 2x
    assert_close(x.grad, x_np, **TIGHT)
    assert d.grad is None


# ------------------------------------------------------------------- backward's argument
def test_backward_non_scalar_needs_a_gradient(device):
    y = tensor(np.ones((2, 3)), device, requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match=r"one-element.*\(2, 3\)"):
        y.backward()


def test_backward_gradient_shape_mismatch_raises(device):
    y = tensor(np.ones((2, 3)), device, requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"grad has shape \(3, 2\) but the tensor has shape \(2, 3\)"):
        y.backward(to_device(np.ones((3, 2)), device))


def test_backward_of_one_element_tensor_defaults_to_one(device):
    x = tensor(np.array([[3.0]]), device, requires_grad=True)
    (x * x).backward()
    assert_close(x.grad, np.array([[6.0]]), **TIGHT)


# ------------------------------------------------------------------- dtypes
def test_python_numbers_become_float32():
    assert Tensor(1.5).dtype == np.float32
    assert Tensor([[1.0, 2.0]]).dtype == np.float32
    assert minires.tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(np.array([1.0])).dtype == np.float64  # NumPy arrays keep their dtype
    assert Tensor(np.float64(1.0)).dtype == np.float64
    assert Tensor([1, 2]).dtype.kind == "i"


@pytest.mark.parametrize(
    "op",
    [lambda x: x * 2.0, lambda x: 2.0 * x, lambda x: x + 1, lambda x: 1 - x, lambda x: x / 3, lambda x: 2.0 / x,
     lambda x: x**2, lambda x: 2.0**x, lambda x: x * np.float64(2.0), lambda x: x.sum() * 0.5],
    ids=["x*2.0", "2.0*x", "x+1", "1-x", "x/3", "2.0/x", "x**2", "2.0**x", "x*np.float64", "sum*0.5"],
)
def test_python_scalar_ops_keep_float32(device, op):
    x = tensor(np.array([1.0, 2.0], dtype=np.float32), device, requires_grad=True)
    y = op(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_float32_stays_float32_through_a_small_net(device):
    """conv -> batch norm -> relu -> max pool -> linear -> cross-entropy, all in float32."""
    rng = rng_for(6)

    def params(dtype):
        p = dict(
            x=rng_for(7).standard_normal((4, 3, 6, 6)), w=rng_for(8).standard_normal((5, 3, 3, 3)) * 0.3,
            b=rng_for(9).standard_normal(5), gamma=rng_for(10).uniform(0.5, 1.5, 5), beta=rng_for(11).standard_normal(5),
            fc_w=rng_for(12).standard_normal((10, 5 * 3 * 3)) * 0.1, fc_b=rng_for(13).standard_normal(10),
        )
        return {k: tensor(v.astype(dtype), device, requires_grad=True) for k, v in p.items()}

    target = to_device(rng.integers(0, 10, size=4), device)

    def net(p, dtype):
        rm, rv = to_device(np.zeros(5, dtype), device), to_device(np.ones(5, dtype), device)
        h = F.conv2d(p["x"], p["w"], p["b"], padding=1)
        h = F.batch_norm(h, rm, rv, p["gamma"], p["beta"], training=True)
        h = F.max_pool2d(F.relu(h), 2)
        logits = F.linear(F.flatten(h, 1), p["fc_w"], p["fc_b"])
        return F.cross_entropy(logits, target), (h, logits, rm, rv)

    p32, p64 = params(np.float32), params(np.float64)
    loss32, inter = net(p32, np.float32)
    loss64, _ = net(p64, np.float64)
    assert loss32.dtype == np.float32 and all(t.dtype == np.float32 for t in inter)
    loss32.backward()
    loss64.backward()
    for name, t in p32.items():
        assert t.grad.dtype == np.float32, f"{name}.grad is {t.grad.dtype}"
        assert device_of(t.grad) == device
        assert_close(t.grad, to_numpy(p64[name].grad), rtol=1e-3, atol=1e-4)
    assert abs(loss32.item() - loss64.item()) < 1e-4


# ------------------------------------------------------------------- devices and conversions
def test_device_and_to(device):
    x = tensor(np.arange(3.0), device, requires_grad=True)
    assert x.device == device
    assert x.to(device) is x
    cpu = x.to("cpu")
    assert cpu.device == "cpu" and isinstance(cpu.data, np.ndarray) and cpu.requires_grad and cpu.is_leaf
    np.testing.assert_array_equal(cpu.data, np.arange(3.0))
    np.testing.assert_array_equal(x.numpy(), np.arange(3.0))
    back = cpu.to(device)
    assert back.device == device
    y = (back * back).sum()
    y.backward()
    assert device_of(back.grad) == device
    assert y.item() == 5.0


def test_ndarray_on_the_left_of_an_operator_gives_a_tensor():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    for y in (np.ones((2, 2)) + x, np.ones((2, 2)) * x, np.ones((2, 2)) @ x, np.ones((2, 2)) - x):
        assert isinstance(y, Tensor) and y.requires_grad


def test_item_and_numpy():
    assert Tensor(np.array([[2.5]])).item() == 2.5
    with pytest.raises(ValueError, match=r"item\(\).*\(2,\)"):
        Tensor(np.ones(2)).item()


# ------------------------------------------------------------------- the Function API
class _Cube(Function):
    """y = x^3 * scale; dx = 3 x^2 * scale * dy; the second input (an exponent-free constant) gets None."""

    def __init__(self, scale):
        self.scale = scale

    def forward(self, x, unused):
        self.x = x
        return x**3 * self.scale

    def backward(self, gy):
        return 3 * self.x**2 * self.scale * gy, None


def test_custom_function(device):
    x_np = np.array([1.0, -2.0, 0.5])
    x = tensor(x_np, device, requires_grad=True)
    other = tensor(np.zeros(3), device, requires_grad=True)
    y = _Cube(2.0)(x, other)
    assert_close(y, 2 * x_np**3, **TIGHT)
    y.backward(to_device(np.ones(3), device))
    assert_close(x.grad, 6 * x_np**2, **TIGHT)
    assert other.grad is None
    assert minires.gradcheck(lambda t: _Cube(0.5)(t, None), [tensor(x_np, device, requires_grad=True)])


def test_grad_fn_exposes_the_graph():
    a = minires.Tensor(np.ones(3), requires_grad=True)
    b = a * 2.0 + 1.0
    assert a.grad_fn is None and b.grad_fn is not None
    assert type(b.grad_fn).__name__ == "Add"
    mul = b.grad_fn.inputs[0].grad_fn
    assert type(mul).__name__ == "Mul" and mul.inputs[0] is a


def test_synchronize_is_a_no_op_on_the_cpu():
    from minires.backend import synchronize
    assert synchronize("cpu") is None
    with pytest.raises(ValueError, match="device must be 'cpu' or 'gpu'"):
        synchronize("tpu")


# ------------------------------------------------------------------- the contract with the ops
def test_needs_input_grad_is_set_once_by_the_engine(device):
    seen = []

    class Spy(Function):
        def forward(self, a, b, c):
            seen.append(self.needs_input_grad)
            return a * b

        def backward(self, gy):
            return gy, None, None

    a = tensor(np.ones(3), device, requires_grad=True)
    b = tensor(np.ones(3), device)
    Spy()(a, b, None)
    with no_grad():
        Spy()(a, b, None)
    assert seen == [(True, False, False), (False, False, False)]


@pytest.mark.parametrize("wants", [(True, False, False), (False, True, False), (False, False, True),
                                   (True, True, True)])
def test_linear_computes_only_the_gradients_asked_for(wants):
    x, w, b = (Tensor(np.random.default_rng(i).standard_normal(s), requires_grad=r)
               for i, (s, r) in enumerate(zip([(4, 3), (2, 3), (2,)], wants)))
    y = F.linear(x, w, b)
    grads = y.grad_fn.backward(np.ones((4, 2)))
    assert tuple(g is not None for g in grads) == wants


@pytest.mark.parametrize("op", [F.add, F.sub, F.mul, F.div, F.pow, F.matmul])
def test_binary_ops_compute_only_the_gradients_asked_for(op):
    a = Tensor(np.random.default_rng(0).uniform(1, 2, (2, 2)), requires_grad=True)
    b = Tensor(np.random.default_rng(1).uniform(1, 2, (2, 2)))
    grads = op(a, b).grad_fn.backward(np.ones((2, 2)))
    assert grads[0] is not None and grads[1] is None


def test_the_engine_prefers_forward_gpu_only_on_gpu_data(device):
    calls = []

    class Op(Function):
        def forward(self, x):
            calls.append("forward")
            return x * 2

        def forward_gpu(self, x):
            calls.append("forward_gpu")
            return x * 2

        def backward(self, gy):
            calls.append("backward")
            return gy * 2

        def backward_gpu(self, gy):
            calls.append("backward_gpu")
            return gy * 2

    x = tensor(np.ones(2), device, requires_grad=True)
    Op()(x).backward(_grad_of(device, (2,)))
    assert calls == (["forward", "backward"] if device == "cpu" else ["forward_gpu", "backward_gpu"])


def test_the_engine_does_not_import_the_ops():
    """The layering of minires/__init__.py: engine below ops. The Tensor operators are attached
    afterwards (functional.setup_tensor_methods), so there is no engine <-> functional loop."""
    import ast
    import inspect

    import minires.engine
    tree = ast.parse(inspect.getsource(minires.engine))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert not any(m and ("functional" in m or "ops" in m) for m in imported), imported
    x = Tensor(np.ones((2, 3)))
    assert isinstance(x + 1, Tensor) and (2 * x).sum().item() == 12 and x.T.shape == (3, 2)


def test_import_minires_gives_the_torch_like_namespaces():
    import subprocess
    import sys
    code = ("import minires; minires.optim.SGD; minires.optim.MultiStepLR; minires.data.Loader; "
            "minires.data.synthetic_cifar; minires.nn.Conv2d; minires.functional.conv2d; print('ok')")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"
