"""minires.summary: parameters and multiply-adds against the paper, and the shape-only pass."""
import numpy as np
import pytest

import minires
from minires import Tensor, nn, summary
from minires.models import cifar_resnet, imagenet_resnet

# Table 1: FLOPs (multiply-adds) at 224x224; torchvision's parameter counts (option B).
TABLE_1 = {18: (1.8e9, 11_689_512), 34: (3.6e9, 21_797_672), 50: (3.8e9, 25_557_032),
           101: (7.6e9, 44_549_160), 152: (11.3e9, 60_192_808)}


def cifar_macs(n, width=16, classes=10):
    """Multiply-adds of the 6n+2 CIFAR net on one 32x32 image, by hand: H*W*C_out*C_in*9 per conv."""
    w1, w2, w3 = width, 2 * width, 4 * width
    macs = 32 * 32 * w1 * 3 * 9                                          # stem
    macs += 2 * n * 32 * 32 * w1 * w1 * 9                                # stage 1 at 32x32
    macs += 16 * 16 * w2 * 9 * (w1 + (2 * n - 1) * w2)                   # stage 2 at 16x16
    macs += 8 * 8 * w3 * 9 * (w2 + (2 * n - 1) * w3)                     # stage 3 at 8x8
    return macs + w3 * classes


@pytest.mark.parametrize("depth", list(TABLE_1))
def test_imagenet_multiply_adds_match_table_1_and_parameters_match_torchvision(depth):
    flops, params = TABLE_1[depth]
    s = summary(imagenet_resnet(depth, seed=0), (1, 3, 224, 224))
    assert s["params"] == params
    assert abs(s["macs"] / flops - 1) < 0.03, (depth, s["macs"])
    assert s["output_shape"] == (1, 1000)


@pytest.mark.parametrize("depth, paper", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7), (1202, 19.4)])
def test_cifar_summary_counts(depth, paper):
    n = (depth - 2) // 6
    for plain in (False, True):
        s = summary(cifar_resnet(depth, plain=plain, seed=0), (1, 3, 32, 32))
        assert round(s["params"] / 1e6, 1 if paper >= 1 else 2) == paper
        assert s["macs"] == cifar_macs(n)  # option A adds no multiply-adds


def test_macs_scale_with_the_batch_and_count_projections():
    a = summary(cifar_resnet(20, seed=0), (1, 3, 32, 32))["macs"]
    assert summary(cifar_resnet(20, seed=0), (8, 3, 32, 32))["macs"] == 8 * a
    b = summary(cifar_resnet(20, shortcut="B", seed=0), (1, 3, 32, 32))["macs"]
    assert b == a + 16 * 16 * 32 * 16 + 8 * 8 * 64 * 32  # the two 1x1 stride-2 projections


def test_shape_only_pass_agrees_with_a_real_forward():
    model = cifar_resnet(8, width=4, shortcut="B", seed=0)
    real = {}

    def record(name):
        def hook(module, args, out):
            real.setdefault(name, out.shape)  # returns None: the output is kept
        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if name]
    y = model(Tensor(np.zeros((2, 3, 16, 16), dtype=np.float32)))
    for h in handles:
        h.remove()
    s = summary(model, (2, 3, 16, 16))
    assert {r.name: r.output_shape for r in s["rows"]} == real
    assert s["output_shape"] == y.shape
    conv = next(r for r in s["rows"] if r.name == "layer2.0.conv1")
    assert (conv.type, conv.params, conv.macs) == ("Conv2d", 4 * 8 * 9, 2 * 8 * 8 * 8 * 4 * 9)
    stage = next(r for r in s["rows"] if r.name == "layer2")
    assert stage.macs == sum(r.macs for r in s["rows"] if r.name.startswith("layer2.") and r.type == "Conv2d")
    assert stage.params == sum(p.numel() for p in model.layer2.parameters())


def test_summary_computes_no_convolution(monkeypatch):
    def refuse(self, x):
        raise AssertionError("summary ran a convolution")

    monkeypatch.setattr(nn.Conv2d, "forward", refuse)
    assert summary(imagenet_resnet(18, width=8, seed=0), (1, 3, 224, 224))["macs"] > 0


def test_summary_restores_modes_and_leaves_random_state_alone():
    model = cifar_resnet(14, width=4, stochastic_depth=0.5, seed=0)
    model.layer2.eval()
    modes = [m.training for m in model.modules()]
    state = model.layer1[0].generator.bit_generator.state
    summary(model, (1, 3, 32, 32))
    assert [m.training for m in model.modules()] == modes
    assert model.layer1[0].generator.bit_generator.state == state
    assert all(m.running_mean.sum() == 0 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_printed_table():
    s = summary(cifar_resnet(20, seed=0), (1, 3, 32, 32))
    text = str(s)
    assert "Layer (type)" in text and "Output shape" in text and "Params" in text and "Mult-adds" in text
    assert "layer1.0.conv1 (Conv2d)" in text and "(1, 16, 32, 32)" in text
    assert "Total params: 269,722 (269.72K)" in text
    assert "fc (Linear)" in text and "(1, 10)" in text
    assert repr(s) == text
    short = s.table(depth=1)
    assert "layer1 (Sequential)" in short and "layer1.0" not in short
    assert set(s) >= {"params", "macs", "rows"}


def test_summary_errors():
    model = cifar_resnet(8, width=4, seed=0)
    with pytest.raises(ValueError, match=r"summary\(input_shape=\(3, 32, 32\)\).*4-D"):
        summary(model, (3, 32, 32))  # the batch dimension is part of the shape
    with pytest.raises(ValueError, match="positive ints"):
        summary(model, (1, 3, 0, 32))
    with pytest.raises(TypeError, match="Module"):
        summary(lambda x: x, (1, 3, 32, 32))
    assert minires.summary is summary
