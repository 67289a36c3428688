"""minires.probes: per-layer outputs and the gradients that reach them, checked by hand."""
import numpy as np
import pytest

import minires
import minires.functional as F
from minires import Tensor, nn
from minires.models import cifar_resnet
from minires.probes import Probe, layer_stats, record_layers, weight_grad_norms


def rand(shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


class TwoLayer(nn.Module):
    """y = fc2(relu(fc1(x))) + fc1(x) when ``skip``: fc1's output is used twice."""

    def __init__(self, skip=False):
        super().__init__()
        self.fc1 = nn.Linear(3, 4, generator=np.random.default_rng(1))
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(4, 4, generator=np.random.default_rng(2))
        self.skip = skip

    def forward(self, x):
        h = self.fc1(x)
        y = self.fc2(self.relu(h))
        return y + h if self.skip else y


@pytest.mark.parametrize("skip", [False, True])
def test_recorded_gradient_is_the_chain_rule_by_hand(skip):
    model = TwoLayer(skip).double()
    x, g = rand((5, 3)), rand((5, 4), seed=1)
    with record_layers([("fc1", model.fc1), ("fc2", model.fc2)]) as rec:
        model(Tensor(x)).backward(g)
    w1, b1, w2 = model.fc1.weight.data, model.fc1.bias.data, model.fc2.weight.data
    h = x @ w1.T + b1
    np.testing.assert_allclose(rec.outputs["fc1"], h, rtol=1e-12)
    np.testing.assert_allclose(rec.grads["fc2"], g, rtol=1e-12)  # fc2's output is (part of) the output
    # dL/dh = (g W2) * 1[h > 0] through the branch, plus g through the skip: the sum of both uses
    want = (g @ w2) * (h > 0) + (g if skip else 0)
    np.testing.assert_allclose(rec.grads["fc1"], want, rtol=1e-12)


def test_probes_change_neither_outputs_nor_parameter_gradients():
    x, y = Tensor(rand((4, 3, 8, 8), dtype=np.float32)), np.array([0, 1, 2, 3])
    runs = []
    for probe in (False, True):
        model = cifar_resnet(8, width=4, seed=0)
        blocks = [(f"b{i}", b) for i, b in enumerate(model.blocks())]
        if probe:
            with record_layers(blocks):
                loss = F.cross_entropy(model(x), y)
                loss.backward()
        else:
            loss = F.cross_entropy(model(x), y)
            loss.backward()
        runs.append((loss.item(), [p.grad.copy() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(a, b)


def test_probe_is_the_identity_forward_and_backward():
    seen = []
    x = Tensor(rand((3, 4)), requires_grad=True)
    assert minires.gradcheck(lambda t: Probe(seen.append)(t) * t, (x,))
    assert seen and seen[-1].shape == (3, 4)


def test_hooks_are_removed_on_exit_even_after_an_error():
    model = TwoLayer()
    with pytest.raises(ZeroDivisionError):
        with record_layers({"fc1": model.fc1}) as rec:
            model(Tensor(rand((2, 3), dtype=np.float32)))
            1 / 0
    assert not model.fc1._forward_hooks
    model(Tensor(rand((2, 3), seed=5, dtype=np.float32)))  # not recorded any more: the first call's output stays
    np.testing.assert_array_equal(rec.outputs["fc1"], model.fc1(Tensor(rand((2, 3), dtype=np.float32))).numpy())


def test_a_module_called_twice_gets_the_sum_of_both_gradients():
    fc = nn.Linear(3, 2, generator=np.random.default_rng(0)).double()
    g1, g2 = rand((4, 2), seed=1), rand((4, 2), seed=2)
    with record_layers({"fc": fc}) as rec:
        first, second = fc(Tensor(rand((4, 3), seed=3))), fc(Tensor(rand((4, 3), seed=4)))
        ((first * Tensor(g1)).sum() + (second * Tensor(g2)).sum()).backward()
    np.testing.assert_allclose(rec.grads["fc"], g1 + g2, rtol=1e-12)


def test_no_grad_records_outputs_and_no_gradient():
    model = TwoLayer()
    with minires.no_grad(), record_layers({"fc1": model.fc1}) as rec:
        model(Tensor(rand((2, 3), dtype=np.float32)))
    assert "fc1" in rec.outputs and not rec.grads


def _gradient_at_block_output(model, x, y, index):
    """dL/d(output of block ``index``), independently: run the rest of the net from that output
    as a leaf tensor (training mode: batch statistics, the same as in the full forward)."""
    h = model.relu(model.bn1(model.conv1(x)))
    blocks = model.blocks()
    for b in blocks[:index + 1]:
        h = b(h)
    leaf = Tensor(h.data.copy(), requires_grad=True)
    out = leaf
    for b in blocks[index + 1:]:
        out = b(out)
    F.cross_entropy(model.fc(model.flatten(model.avgpool(out))), y).backward()
    return h.data, leaf.grad


def test_layer_stats_match_an_independent_computation():
    model = cifar_resnet(14, width=4, seed=0).double()
    x, y = Tensor(rand((6, 3, 8, 8))), np.array([0, 1, 2, 3, 4, 5])
    named = [(f"b{i}", b) for i, b in enumerate(model.blocks())]
    stats = layer_stats(model, x, y, named)
    assert stats.names == [n for n, _ in named] and len(stats.act_std) == len(stats.grad_norm) == 6
    for i in (0, 2, 5):
        out, grad = _gradient_at_block_output(model, x, y, i)
        np.testing.assert_allclose(stats.act_std[i], out.std(), rtol=1e-10)
        np.testing.assert_allclose(stats.grad_norm[i], np.linalg.norm(grad), rtol=1e-8)
    assert np.isclose(stats.loss, F.cross_entropy(model(x), y).item(), rtol=1e-10)


def test_weight_grad_norms_in_forward_order():
    model = cifar_resnet(8, width=4, seed=0)
    with pytest.raises(RuntimeError, match="weight_grad_norms: conv1.weight has no gradient"):
        weight_grad_norms(model)
    F.cross_entropy(model(Tensor(rand((2, 3, 8, 8), dtype=np.float32))), np.array([1, 2])).backward()
    names, norms = weight_grad_norms(model)
    assert names[0] == "conv1" and names[-1] == "fc" and len(names) == 8  # 7 convs and the fc: depth 8
    assert names.index("layer1.0.conv1") < names.index("layer1.0.conv2") < names.index("layer2.0.conv1")
    np.testing.assert_allclose(norms[names.index("layer2.0.conv2")],
                               np.linalg.norm(model.layer2[0].conv2.weight.grad), rtol=1e-6)


def test_bad_arguments_are_named():
    model = TwoLayer()
    with pytest.raises(TypeError, match="record_layers: modules must be"):
        with record_layers([model.fc1]):
            pass
    with pytest.raises(ValueError, match="record_layers: module names must be unique"):
        with record_layers([("a", model.fc1), ("a", model.fc2)]):
            pass
    net = cifar_resnet(8, width=4, seed=0)
    unused = nn.ReLU()
    with pytest.raises(RuntimeError, match=r"layer_stats: no gradient reached the output of \['unused'\]"):
        layer_stats(net, rand((2, 3, 8, 8), dtype=np.float32), np.array([0, 1]), [("unused", unused)])
