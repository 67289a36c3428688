"""minires.nn: Module registration and traversal, modes, devices, state dicts, layers, init."""
import math
from collections import OrderedDict

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import Tensor, nn
from minires.backend import to_device, to_numpy
from minires.nn import init


def rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


class Net(nn.Module):
    """conv -> BN -> ReLU -> pool -> fc, with one extra buffer and one unused parameter."""

    def __init__(self, classes=3, seed=0):
        super().__init__()
        g = np.random.default_rng(seed)
        self.features = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False, generator=g), nn.BatchNorm2d(4), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, classes, generator=g)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


# ----------------------------------------------------------------------- Parameter / registration

def test_parameter_is_a_tensor_that_requires_grad_and_keeps_dtype():
    p = nn.Parameter(np.zeros(3, dtype=np.float64))
    assert isinstance(p, Tensor) and p.requires_grad and p.dtype == np.float64
    assert repr(p).startswith("Parameter containing:")
    with pytest.raises(TypeError):
        nn.Parameter(np.zeros(3, dtype=np.int64))  # integers cannot require grad


def test_attributes_register_parameters_modules_and_buffers_with_dotted_names():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["features.0.weight", "features.1.weight", "features.1.bias", "fc.weight", "fc.bias"]
    assert [n for n, _ in net.named_buffers()] == [
        "features.1.running_mean", "features.1.running_var", "features.1.num_batches_tracked"]
    assert [n for n, _ in net.named_modules()] == ["", "features", "features.0", "features.1", "features.2", "pool", "fc"]
    assert [type(m).__name__ for m in net.children()] == ["Sequential", "AdaptiveAvgPool2d", "Linear"]
    assert net.features[0].bias is None and "bias" in net.features[0]._parameters
    # Re-assigning an attribute moves it between registries.
    net.fc = nn.Identity()
    assert "fc.weight" not in dict(net.named_parameters())


def test_shared_parameters_and_modules_are_listed_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = self.a

    t = Tied()
    assert len(list(t.parameters())) == 2
    assert len(list(t.modules())) == 2


def test_registration_errors_are_clear():
    class NoInit(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        NoInit()
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="parameter 'weight'"):
        lin.weight = Tensor(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="buffer"):
        nn.BatchNorm2d(2).register_buffer("x", Tensor([1.0]))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        lin.nope


def test_train_eval_are_recursive_and_zero_grad_resets():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net(Tensor(rand((2, 2, 5, 5)))).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(np.all(p.grad == 0) for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_forward_hooks_see_outputs_can_replace_them_and_can_be_removed():
    net = Net()
    seen = []
    h = net.features[1].register_forward_hook(lambda m, args, out: seen.append((args[0].shape, out.shape)))
    x = Tensor(rand((2, 2, 5, 5)))
    net(x)
    assert seen == [((2, 4, 5, 5), (2, 4, 5, 5))]
    h.remove()
    net(x)
    assert len(seen) == 1
    h2 = net.fc.register_forward_hook(lambda m, args, out: out * 0.0)
    assert np.all(net(x).numpy() == 0)
    h2.remove()


# ----------------------------------------------------------------------- dtype, device

def test_double_keeps_parameter_objects_and_integer_buffers():
    net = Net()
    params = list(net.parameters())
    net.double()
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == np.float64 for p in params)
    bn = net.features[1]
    assert bn.running_mean.dtype == np.float64 and bn.num_batches_tracked.dtype == np.int64
    assert net(Tensor(rand((2, 2, 5, 5), dtype=np.float64))).dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    with pytest.raises(TypeError, match="floating"):
        net.to(dtype=np.int32)


def test_to_device_moves_in_place_and_computes_the_same(device):
    cpu, moved = Net(seed=1), Net(seed=1)
    params = list(moved.parameters())
    assert moved.to(device) is moved
    assert list(moved.parameters()) == params  # same Parameter objects: optimizers keep working
    assert all(p.device == device for p in moved.parameters())
    assert all(minires.backend.device_of(b) == device for b in moved.buffers())
    x = rand((3, 2, 6, 6))
    for mode in (True, False):
        cpu.train(mode), moved.train(mode)
        y_cpu = cpu(Tensor(x))
        y_dev = moved(Tensor(to_device(x, device)))
        np.testing.assert_allclose(to_numpy(y_dev.data), y_cpu.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(moved.features[1].running_var), cpu.features[1].running_var, rtol=1e-6)


# ----------------------------------------------------------------------- state dict

def test_state_dict_lists_parameters_and_buffers_in_pytorch_order():
    sd = Net().state_dict()
    assert list(sd) == [
        "features.0.weight", "features.1.weight", "features.1.bias", "features.1.running_mean",
        "features.1.running_var", "features.1.num_batches_tracked", "fc.weight", "fc.bias"]
    assert sd["features.1.num_batches_tracked"].shape == () and sd["features.1.num_batches_tracked"].dtype == np.int64


def test_state_dict_round_trip_through_npz(tmp_path):
    a, b = Net(seed=1), Net(seed=2)
    x = Tensor(rand((4, 2, 5, 5), seed=3))
    a(x)  # training-mode forwards move BN's running statistics away from 0 and 1
    a(x)
    path = tmp_path / "net.npz"
    np.savez(path, **{k: to_numpy(v) for k, v in a.state_dict().items()})
    b_params = list(b.parameters())
    with np.load(path) as f:
        result = b.load_state_dict(f)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert list(b.parameters()) == b_params
    for k, v in a.state_dict().items():
        assert b.state_dict()[k].dtype == v.dtype
        np.testing.assert_array_equal(b.state_dict()[k], v)
    assert int(b.features[1].num_batches_tracked) == 2
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_copies_values_and_keeps_the_model_dtype():
    net = Net()
    sd = {k: np.asarray(v, dtype=np.float64) + 1 if v.dtype == np.float32 else v for k, v in net.state_dict().items()}
    weight_array = net.fc.weight.data
    net.load_state_dict(sd)
    assert net.fc.weight.data is weight_array and weight_array.dtype == np.float32
    np.testing.assert_allclose(net.fc.weight.data, sd["fc.weight"].astype(np.float32))


def test_strict_loading_reports_missing_unexpected_and_misshaped_entries_without_changing_anything():
    net = Net()
    before = {k: v.copy() for k, v in net.state_dict().items()}
    sd = dict(Net(seed=5).state_dict())
    del sd["fc.bias"]
    sd["extra.weight"] = np.zeros(2, dtype=np.float32)
    sd["fc.weight"] = np.zeros((7, 4), dtype=np.float32)
    with pytest.raises(RuntimeError) as e:
        net.load_state_dict(sd)
    msg = str(e.value)
    assert "Missing key(s) in state_dict: 'fc.bias'" in msg
    assert "Unexpected key(s) in state_dict: 'extra.weight'" in msg
    assert "size mismatch for fc.weight" in msg and "(7, 4)" in msg and "(3, 4)" in msg
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    # Non-strict: missing/unexpected are returned, but a shape mismatch is still an error.
    with pytest.raises(RuntimeError, match="size mismatch"):
        net.load_state_dict(sd, strict=False)
    del sd["fc.weight"]
    result = net.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["fc.weight", "fc.bias"] and result.unexpected_keys == ["extra.weight"]
    np.testing.assert_array_equal(net.features[0].weight.data, sd["features.0.weight"])


def test_load_state_dict_refuses_float_into_integer_buffer():
    net = Net()
    sd = dict(net.state_dict())
    sd["features.1.num_batches_tracked"] = np.array(1.5)
    with pytest.raises(RuntimeError, match="dtype mismatch for features.1.num_batches_tracked"):
        net.load_state_dict(sd)


# ----------------------------------------------------------------------- repr

def test_repr_matches_pytorch_layout():
    assert repr(nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)) == (
        "Conv2d(16, 32, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)")
    assert repr(nn.Conv2d(3, 8, 1)) == "Conv2d(3, 8, kernel_size=(1, 1), stride=(1, 1))"
    assert repr(nn.BatchNorm2d(16)) == "BatchNorm2d(16, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    assert repr(nn.Linear(64, 10)) == "Linear(in_features=64, out_features=10, bias=True)"
    assert repr(nn.MaxPool2d(3, 2, 1)) == "MaxPool2d(kernel_size=3, stride=2, padding=1)"
    assert repr(nn.Sequential(nn.ReLU(), nn.Sequential(nn.Identity()))) == (
        "Sequential(\n  (0): ReLU()\n  (1): Sequential(\n    (0): Identity()\n  )\n)")


# ----------------------------------------------------------------------- layers

def test_sequential_indexing_slicing_append_and_ordered_dict():
    s = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert len(s) == 3 and isinstance(s[-1], nn.Linear) and isinstance(s[1], nn.ReLU)
    assert [type(m).__name__ for m in s[1:]] == ["ReLU", "Linear"]
    assert s.append(nn.Identity()) is s and len(s) == 4 and "3" in s._modules
    with pytest.raises(IndexError):
        s[4]
    named = nn.Sequential(OrderedDict([("conv", nn.Conv2d(1, 1, 1)), ("act", nn.ReLU())]))
    assert [n for n, _ in named.named_parameters()] == ["conv.weight", "conv.bias"]
    with pytest.raises(TypeError, match="argument 1"):
        nn.Sequential(nn.ReLU(), lambda x: x)


@pytest.mark.parametrize("layer, shape", [
    (nn.Conv2d(3, 5, 3, stride=2, padding=1), (2, 3, 9, 7)),
    (nn.Conv2d(3, 4, (1, 3), bias=False), (1, 3, 4, 5)),
    (nn.Linear(6, 2), (3, 6)),
    (nn.BatchNorm2d(3), (2, 3, 4, 4)),
    (nn.ReLU(), (2, 3)),
    (nn.Identity(), (2, 3)),
    (nn.MaxPool2d(3, 2, 1), (1, 2, 7, 7)),
    (nn.AvgPool2d(2), (1, 2, 6, 5)),
    (nn.AdaptiveAvgPool2d(1), (2, 3, 5, 5)),
    (nn.Flatten(), (2, 3, 2, 2)),
])
def test_layers_output_shape_agrees_with_forward(layer, shape):
    y = layer(Tensor(rand(shape)))
    assert layer.output_shape(shape) == y.shape


def test_layers_compute_what_functional_computes():
    x = Tensor(rand((2, 3, 6, 6)))
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    np.testing.assert_array_equal(conv(x).numpy(), F.conv2d(x, conv.weight, conv.bias, 2, 1).numpy())
    lin = nn.Linear(6, 2)
    v = Tensor(rand((5, 6)))
    np.testing.assert_allclose(lin(v).numpy(), v.numpy() @ lin.weight.numpy().T + lin.bias.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(nn.MaxPool2d(3, 2, 1)(x).numpy(), F.max_pool2d(x, 3, 2, 1).numpy())
    np.testing.assert_array_equal(nn.Flatten()(x).numpy(), x.numpy().reshape(2, -1))
    assert nn.Identity()(x) is x


def test_conv_and_linear_count_multiply_adds():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
    # Output 8 x 16 x 16 per image, each value a dot product of 3*3*3 = 27 products.
    assert conv.macs((2, 3, 32, 32)) == 2 * 8 * 16 * 16 * 27
    assert nn.Linear(64, 10).macs((4, 64)) == 4 * 64 * 10


def test_batchnorm_train_uses_batch_statistics_and_updates_running_ones():
    bn = nn.BatchNorm2d(3, momentum=0.1)
    bn.weight.data[...] = [1.0, 2.0, 0.5]
    bn.bias.data[...] = [0.0, -1.0, 3.0]
    x = rand((4, 3, 5, 5)) * 3 + 2
    y = bn(Tensor(x)).numpy()
    mean, var = x.mean(axis=(0, 2, 3), dtype=np.float64), x.var(axis=(0, 2, 3), dtype=np.float64)
    want = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5) * bn.weight.numpy()[:, None, None] \
        + bn.bias.numpy()[:, None, None]
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    m = 4 * 5 * 5
    np.testing.assert_allclose(bn.running_mean, 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * var * m / (m - 1), rtol=1e-5)
    assert int(bn.num_batches_tracked) == 1 and bn.running_mean.dtype == np.float32

    # Eval: the running statistics normalise, nothing is updated.
    bn.eval()
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    y_eval = bn(Tensor(x)).numpy()
    want_eval = (x - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5) * bn.weight.numpy()[:, None, None] \
        + bn.bias.numpy()[:, None, None]
    np.testing.assert_allclose(y_eval, want_eval, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(bn.running_mean, rm)
    assert int(bn.num_batches_tracked) == 1
    assert not np.allclose(y_eval, y)


def test_batchnorm_without_running_stats_always_uses_the_batch():
    bn = nn.BatchNorm2d(2, affine=False, track_running_stats=False).eval()
    assert list(bn.state_dict()) == []
    y = bn(Tensor(rand((3, 2, 4, 4)) + 5)).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)


def test_layer_argument_errors():
    with pytest.raises(ValueError, match="Conv2d: in_channels"):
        nn.Conv2d(0, 3, 3)
    with pytest.raises(ValueError, match="stride"):
        nn.Conv2d(1, 3, 3, stride=0)
    with pytest.raises(ValueError, match="output_size=1"):
        nn.AdaptiveAvgPool2d(2)
    with pytest.raises(ValueError, match="BatchNorm2d: expected a 4-D input"):
        nn.BatchNorm2d(3)(Tensor(rand((2, 3))))
    with pytest.raises(ValueError, match="Conv2d: expected 3 input channels"):
        nn.Conv2d(3, 4, 3).output_shape((1, 2, 8, 8))
    with pytest.raises(ValueError, match="momentum"):
        nn.BatchNorm2d(3, momentum=2)


# ----------------------------------------------------------------------- init

def test_kaiming_normal_has_std_sqrt_2_over_fan_and_keeps_float32():
    w = nn.Parameter(np.empty((64, 32, 3, 3), dtype=np.float32))
    g = np.random.default_rng(0)
    init.kaiming_normal_(w, mode="fan_in", generator=g)
    assert w.dtype == np.float32
    # 18,432 samples: the sample std is within ~1% of sqrt(2 / (32*9)) with overwhelming probability.
    assert abs(w.numpy().std() / math.sqrt(2 / (32 * 9)) - 1) < 0.03
    assert abs(w.numpy().mean()) < 0.01 * math.sqrt(2 / (32 * 9)) * 10
    init.kaiming_normal_(w, mode="fan_out", generator=g)
    assert abs(w.numpy().std() / math.sqrt(2 / (64 * 9)) - 1) < 0.03
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(w, mode="fan_avg")


def test_init_is_reproducible_from_a_generator_or_manual_seed():
    a, b = nn.Parameter(np.empty((5, 4), dtype=np.float32)), nn.Parameter(np.empty((5, 4), dtype=np.float32))
    init.kaiming_normal_(a, generator=np.random.default_rng(7))
    init.kaiming_normal_(b, generator=np.random.default_rng(7))
    np.testing.assert_array_equal(a.data, b.data)
    init.manual_seed(3)
    c = nn.Conv2d(2, 3, 3)
    init.manual_seed(3)
    d = nn.Conv2d(2, 3, 3)
    np.testing.assert_array_equal(c.weight.data, d.weight.data)
    np.testing.assert_array_equal(c.bias.data, d.bias.data)
    e = nn.Conv2d(2, 3, 3)
    assert not np.array_equal(c.weight.data, e.weight.data)


def test_default_layer_init_and_other_init_functions():
    conv = nn.Conv2d(4, 8, 3, generator=np.random.default_rng(0))
    bound = 1 / math.sqrt(4 * 9)  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.weight.data).max() > 0.9 * bound
    assert np.abs(conv.bias.data).max() <= bound
    t = nn.Parameter(np.empty(1000, dtype=np.float32))
    init.uniform_(t, -2, 3, generator=np.random.default_rng(0))
    assert t.data.min() >= -2 and t.data.max() < 3 and t.data.min() < -1.9
    init.ones_(t)
    assert np.all(t.data == 1) and t.dtype == np.float32
    init.zeros_(t)
    assert np.all(t.data == 0)
    assert init.calculate_fan_in_and_fan_out(conv.weight) == (36, 72)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    with pytest.raises(TypeError, match="Tensor"):
        init.ones_(np.zeros(3))
    with pytest.raises(ValueError, match="nonlinearity"):
        init.calculate_gain("swish")
