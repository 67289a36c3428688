"""Tests of minires.landscape: filter-normalised directions, moving along them, the loss grid."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minires.functional as F
from minires import Tensor, nn
from minires.backend import to_device, to_numpy
from minires.landscape import copy_parameters, filter_normalized_direction, loss_grid, set_parameters_along
from minires.models import cifar_resnet


def small_net(c_in=3, c_mid=4, classes=5, seed=0):
    """conv (with bias) -> BN -> ReLU -> global pool -> linear: every kind of parameter."""
    rng = np.random.default_rng(seed)
    net = nn.Sequential(nn.Conv2d(c_in, c_mid, 3, padding=1, bias=True), nn.BatchNorm2d(c_mid), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_mid, classes))
    for p in net.parameters():  # non-trivial BN parameters, so that a wrong direction shows
        p.data[...] = rng.standard_normal(p.data.shape).astype(p.data.dtype)
    net[1].running_mean[...] = rng.standard_normal(c_mid).astype(np.float32) * 0.1
    net[1].running_var[...] = rng.uniform(0.5, 2.0, c_mid).astype(np.float32)
    return net


def data(n=10, c_in=3, classes=5, seed=1, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c_in, 6, 6)).astype(dtype), rng.integers(0, classes, n)


def eval_loss(model, x, y):
    """The model's mean cross-entropy in eval mode, computed directly (the reference)."""
    model.eval()
    return float(F.cross_entropy(model(Tensor(x)), y).item())


# ----------------------------------------------------------------------------- directions

@given(c_in=st.integers(1, 4), c_mid=st.integers(1, 6), classes=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_direction_has_the_norm_of_each_filter(c_in, c_mid, classes, seed):
    net = small_net(c_in, c_mid, classes, seed=seed)
    d = filter_normalized_direction(net, rng=seed)
    assert list(d) == [name for name, _ in net.named_parameters()]
    for name, p in net.named_parameters():
        assert d[name].shape == p.data.shape and d[name].dtype == p.data.dtype
        if p.data.ndim <= 1:  # BN weight/bias and biases do not move
            np.testing.assert_array_equal(d[name], 0)
        else:
            filters = p.data.shape[0]
            d_norms = np.linalg.norm(d[name].reshape(filters, -1).astype(np.float64), axis=1)
            w_norms = np.linalg.norm(p.data.reshape(filters, -1).astype(np.float64), axis=1)
            np.testing.assert_allclose(d_norms, w_norms, rtol=1e-6)


def test_direction_scales_with_each_filter_not_with_the_layer():
    """Scaling one filter by c scales the same seed's direction on that filter by c, and leaves
    the layer's other filters alone: the normalisation is per filter."""
    net = small_net(c_mid=4)
    before = filter_normalized_direction(net, rng=7)["0.weight"]
    net[0].weight.data[2] *= np.float32(8.0)
    after = filter_normalized_direction(net, rng=7)["0.weight"]
    np.testing.assert_allclose(after[2], 8.0 * before[2], rtol=1e-6)
    np.testing.assert_array_equal(after[[0, 1, 3]], before[[0, 1, 3]])


def test_direction_is_reproducible_and_random():
    net = small_net()
    a, b, c = (filter_normalized_direction(net, rng=s) for s in (3, 3, 4))
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["0.weight"], c["0.weight"])
    gen = np.random.default_rng(3)  # a Generator gives the same numbers as its seed
    np.testing.assert_array_equal(filter_normalized_direction(net, rng=gen)["0.weight"], a["0.weight"])


# ----------------------------------------------------------------------------- moving

def test_moving_along_directions_and_back_restores_exactly():
    net = small_net()
    origin = copy_parameters(net)
    d1, d2 = filter_normalized_direction(net, rng=1), filter_normalized_direction(net, rng=2)
    arrays = [p.data for p in net.parameters()]  # written in place: the same array objects

    set_parameters_along(net, origin, [d1, d2], (0.3, -0.7))
    for name, p in net.named_parameters():
        np.testing.assert_allclose(p.data, origin[name] + 0.3 * d1[name] - 0.7 * d2[name], rtol=1e-6, atol=1e-6)
    assert not np.array_equal(net[0].weight.data, origin["0.weight"])
    set_parameters_along(net, origin, [d1], [-1.5])
    set_parameters_along(net, origin, [d1, d2], (0, 0))
    for name, p in net.named_parameters():
        np.testing.assert_array_equal(p.data, origin[name])
    assert all(a is p.data for a, p in zip(arrays, net.parameters()))


def test_copy_parameters_is_a_copy():
    net = small_net()
    origin = copy_parameters(net)
    net[0].weight.data[...] = 0
    assert np.any(origin["0.weight"] != 0)


# ----------------------------------------------------------------------------- the grid

def test_grid_at_the_origin_is_the_model_loss(device):
    net = small_net().to(device)
    x, y = data(n=11)
    x, y = to_device(x, device), to_device(y, device)
    expected = eval_loss(net, x, y)
    net.train()
    d1, d2 = filter_normalized_direction(net, rng=1), filter_normalized_direction(net, rng=2)
    grid = loss_grid(net, x, y, [d1, d2], [-0.5, 0.0, 0.5], [0.0, 1.0], batch_size=4)  # batches of 4, 4, 3
    assert grid.shape == (3, 2) and grid.dtype == np.float64
    np.testing.assert_allclose(grid[1, 0], expected, rtol=1e-6)
    line = loss_grid(net, x, y, [d1], [0.0, 0.25])
    np.testing.assert_allclose(line[0], expected, rtol=1e-6)
    assert net.training, "loss_grid must put the model back in the mode it found it in"


def test_grid_points_are_the_losses_at_those_parameters():
    """losses[i, j] is the loss at alphas[i]·d1 + betas[j]·d2 (checked point by point, in float64)."""
    net = small_net().double()
    x, y = data(n=9, dtype=np.float64)
    origin = copy_parameters(net)
    d1, d2 = filter_normalized_direction(net, rng=5), filter_normalized_direction(net, rng=6)
    alphas, betas = [-1.0, 0.2, 0.9], [-0.4, 0.6]
    grid = loss_grid(net, x, y, [d1, d2], alphas, betas, batch_size=2)
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            set_parameters_along(net, origin, [d1, d2], (a, b))
            np.testing.assert_allclose(grid[i, j], eval_loss(net, x, y), rtol=1e-12)
    set_parameters_along(net, origin, [d1, d2], (0, 0))
    assert len(set(np.round(grid.ravel(), 9))) == grid.size  # the points really differ


def test_grid_restores_parameters_and_buffers_exactly():
    net = cifar_resnet(8, width=4, seed=0)
    x, y = data(n=6, classes=10)
    before = {k: to_numpy(v).copy() for k, v in net.state_dict().items()}
    d = filter_normalized_direction(net, rng=0)
    loss_grid(net, x, y, [d], np.linspace(-1, 1, 3))
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def test_grid_restores_parameters_when_interrupted():
    net = small_net()
    origin = copy_parameters(net)
    d = filter_normalized_direction(net, rng=0)
    x, y = data(n=4)
    y[0] = 7  # out of range for 5 classes: cross_entropy raises mid-grid
    with pytest.raises(ValueError, match="target values"):
        loss_grid(net, x, y, [d], [0.5, 1.0])
    for name, p in net.named_parameters():
        np.testing.assert_array_equal(p.data, origin[name])


# ----------------------------------------------------------------------------- bad input

def test_bad_input_is_named():
    net = small_net()
    origin = copy_parameters(net)
    d = filter_normalized_direction(net, rng=0)
    x, y = data(n=4)
    wrong_shape = dict(d, **{"0.weight": np.zeros((1, 2))})
    cases = [
        (lambda: filter_normalized_direction(object()), TypeError, "filter_normalized_direction: model"),
        (lambda: filter_normalized_direction(net, rng=1.5), TypeError, "rng"),
        (lambda: filter_normalized_direction(nn.ReLU()), ValueError, "no parameters"),
        (lambda: loss_grid(net, x, y, d, [0.0]), TypeError, "loss_grid: directions must be a list"),
        (lambda: loss_grid(net, x, y, [d, d, d], [0.0], [0.0]), TypeError, "length 3"),
        (lambda: loss_grid(net, x, y, [{"0.weight": d["0.weight"]}], [0.0]), ValueError, "missing"),
        (lambda: loss_grid(net, x, y, [wrong_shape], [0.0]), ValueError, r"\['0.weight'\] has shape \(1, 2\)"),
        (lambda: loss_grid(net, x, y, [d, d], [0.0]), ValueError, "need betas"),
        (lambda: loss_grid(net, x, y, [d], [0.0], [0.0]), ValueError, "only one direction"),
        (lambda: loss_grid(net, x, y, [d], [[0.0, 1.0]]), ValueError, "alphas must be a non-empty 1-D"),
        (lambda: loss_grid(net, x, y, [d], []), ValueError, "alphas"),
        (lambda: loss_grid(net, x, y, [d], [0.0, np.nan]), ValueError, "alphas must be finite"),
        (lambda: loss_grid(net, x, y, [d], [0.0], batch_size=0), ValueError, "batch_size"),
        (lambda: loss_grid(net, x[0], y, [d], [0.0]), ValueError, r"x must be .* got shape \(3, 6, 6\)"),
        (lambda: loss_grid(net, x, y[:3], [d], [0.0]), ValueError, r"y must have shape \(4,\)"),
        (lambda: set_parameters_along(net, origin, [d], (0.1, 0.2)), ValueError, "one number per direction"),
        (lambda: set_parameters_along(net, origin, [d], (np.inf,)), ValueError, "coords\\[0\\] must be a finite"),
        (lambda: set_parameters_along(net, {"x": 1}, [d], (0.1,)), ValueError, "origin must be"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    for name, p in net.named_parameters():  # no failed call moved the model
        np.testing.assert_array_equal(p.data, origin[name])
