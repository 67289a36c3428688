"""minires.models: the paper's blocks and networks, checked number by number."""
import sys

import numpy as np
import pytest

import minires
from minires import Tensor, nn
from minires.ops.conv import use_algorithm
from minires.models import (BasicBlock, Bottleneck, PreActBasicBlock, ResNet, ZeroPadShortcut, cifar_resnet,
                            extend_with_identity, imagenet_resnet, plain_identity_, resnet20, resnet56)


def rand(shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def cifar_option_a_params(n, width=16, classes=10):
    """Parameters of the 6n+2 CIFAR ResNet with option A, counted from Sec. 4.2 by hand:
    3x3 convs without bias, each followed by a BN (2 parameters per channel), then the fc."""
    w1, w2, w3 = width, 2 * width, 4 * width
    convs = 3 * w1 * 9                                   # stem
    convs += 2 * n * w1 * w1 * 9                         # stage 1: 2n convs w1 -> w1
    convs += w1 * w2 * 9 + (2 * n - 1) * w2 * w2 * 9     # stage 2: the first conv takes w1 channels
    convs += w2 * w3 * 9 + (2 * n - 1) * w3 * w3 * 9     # stage 3
    bns = 2 * (w1 + 2 * n * (w1 + w2 + w3))
    return convs + bns + w3 * classes + classes


def perturb_bn(model, seed=0):
    """Random BN weights and running statistics, so that tests do not pass by accident."""
    g = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data[...] = g.uniform(0.5, 1.5, c)
            m.bias.data[...] = g.uniform(-0.2, 0.2, c)
            m.running_mean[...] = g.uniform(-0.2, 0.2, c)
            m.running_var[...] = g.uniform(0.5, 2, c)
    return model


# ----------------------------------------------------------------------- parameter counts

@pytest.mark.parametrize("depth, paper", [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7), (1202, 19.4)])
def test_cifar_parameter_counts_match_the_paper(depth, paper):
    n = (depth - 2) // 6
    res, plain = cifar_resnet(depth, seed=0), cifar_resnet(depth, plain=True, seed=0)
    assert n_params(res) == n_params(plain) == cifar_option_a_params(n)
    digits = 1 if paper >= 1 else 2
    assert round(n_params(res) / 1e6, digits) == paper
    assert len([m for m in res.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]) == depth


def test_resnet20_has_pytorchs_269722_parameters():
    assert n_params(resnet20()) == 269_722


def test_imagenet_nets_have_table_1_layers():
    # Full-size parameter counts and multiply-adds are checked in test_summary.py; the layer
    # structure does not depend on the width, so narrow nets are enough here.
    for depth, (convs3, convs1) in {18: (16, 0), 34: (32, 0), 50: (16, 32), 101: (33, 66), 152: (50, 100)}.items():
        model = imagenet_resnet(depth, width=2, seed=0)
        kinds = [m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)]
        projections = 4 if depth >= 50 else 3  # 1x1 shortcut convs are not counted in the depth
        assert kinds.count((7, 7)) == 1 and kinds.count((3, 3)) == convs3
        assert kinds.count((1, 1)) == convs1 + projections
        assert 1 + convs3 + convs1 + 1 == depth  # stem + 3x3s + 1x1s + fc


def test_shortcut_options_b_and_c_add_parameters():
    a, b, c = (n_params(cifar_resnet(20, shortcut=s, seed=0)) for s in "ABC")
    # B: a 1x1 conv + BN at the two stage transitions (16->32, 32->64).
    assert b == a + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    # C: a projection in each of the 9 blocks.
    assert c == a + 3 * (16 * 16 + 32) + (16 * 32 + 64) + 2 * (32 * 32 + 64) + (32 * 64 + 128) + 2 * (64 * 64 + 128)
    assert a < b < c
    a, b, c = (n_params(imagenet_resnet(34, width=8, shortcut=s, seed=0)) for s in "ABC")
    assert a < b < c


def test_invalid_depths_name_the_valid_ones():
    for depth in (21, 2, 0, 19.0, True):
        with pytest.raises(ValueError, match=r"6n\+2"):
            cifar_resnet(depth)
    with pytest.raises(ValueError, match=r"9n\+2"):
        cifar_resnet(21, block="bottleneck")
    with pytest.raises(ValueError, match="18, 34, 50, 101, 152"):
        imagenet_resnet(20)
    with pytest.raises(ValueError, match="'A', 'B', 'C'"):
        cifar_resnet(20, shortcut="D")
    assert n_params(cifar_resnet(8, width=4)) == cifar_option_a_params(1, width=4)


# ----------------------------------------------------------------------- structure and shapes

def test_output_shapes_and_feature_map_sizes():
    model = cifar_resnet(14, width=4, seed=0)
    sizes = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, args, out: sizes.append(out.shape))
    y = model(Tensor(rand((3, 3, 32, 32))))
    assert y.shape == (3, 10) and y.dtype == np.float32
    assert sizes == [(3, 4, 32, 32), (3, 8, 16, 16), (3, 16, 8, 8)]  # Sec. 4.2: 32, 16, 8 maps

    net = imagenet_resnet(50, width=4, num_classes=7, seed=0)
    sizes.clear()
    for stage in net.stages:
        stage.register_forward_hook(lambda m, args, out: sizes.append(out.shape))
    assert net(Tensor(rand((1, 3, 64, 64)))).shape == (1, 7)
    assert sizes == [(1, 16, 16, 16), (1, 32, 8, 8), (1, 64, 4, 4), (1, 128, 2, 2)]  # 4x channels


def test_bottleneck_puts_the_stride_on_the_first_1x1():
    b = Bottleneck(64, 32, stride=2, shortcut="B")
    assert b.conv1.kernel_size == (1, 1) and b.conv1.stride == (2, 2)
    assert b.conv2.kernel_size == (3, 3) and b.conv2.stride == (1, 1)
    assert b.conv3.out_channels == 128 and b.downsample[0].stride == (2, 2)


def test_shortcut_modules_per_option():
    assert BasicBlock(16, 16, 1, "A").downsample is None
    assert isinstance(BasicBlock(16, 32, 2, "A").downsample, ZeroPadShortcut)
    assert BasicBlock(16, 16, 1, "B").downsample is None
    assert isinstance(BasicBlock(16, 32, 2, "B").downsample, nn.Sequential)
    assert isinstance(BasicBlock(16, 16, 1, "C").downsample, nn.Sequential)
    assert BasicBlock(16, 32, 2, "C", plain=True).downsample is None


def test_option_a_shortcut_is_the_zero_padded_subsample():
    x = rand((2, 3, 6, 5))
    want = np.zeros((2, 7, 3, 3), dtype=np.float32)
    for i in range(3):
        for j in range(3):
            want[:, :3, i, j] = x[:, :, 2 * i, 2 * j]  # every other pixel; channels 3..6 stay zero
    xt = Tensor(x, requires_grad=True)
    y = ZeroPadShortcut(3, 7, 2)(xt)
    np.testing.assert_array_equal(y.numpy(), want)
    g = rand(want.shape, seed=1)
    y.backward(g)
    want_grad = np.zeros_like(x)
    want_grad[:, :, ::2, ::2] = g[:, :3]
    np.testing.assert_array_equal(xt.grad, want_grad)
    assert n_params(ZeroPadShortcut(3, 7, 2)) == 0


def test_block_adds_before_the_final_relu():
    block = perturb_bn(BasicBlock(4, 8, stride=2, shortcut="A", generator=np.random.default_rng(0))).eval()
    x = np.abs(rand((2, 4, 6, 6)))
    xt = Tensor(x)
    branch = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(xt))))).numpy()
    shortcut = np.zeros_like(branch)
    shortcut[:, :4] = x[:, :, ::2, ::2]
    np.testing.assert_allclose(block(xt).numpy(), np.maximum(branch + shortcut, 0), rtol=1e-6, atol=1e-6)
    plain = perturb_bn(BasicBlock(4, 8, stride=2, plain=True, generator=np.random.default_rng(0))).eval()
    np.testing.assert_allclose(plain(xt).numpy(), np.maximum(branch, 0), rtol=1e-6, atol=1e-6)


def test_preactivation_block_has_nothing_after_the_addition():
    block = perturb_bn(PreActBasicBlock(4, 4, generator=np.random.default_rng(0))).eval()
    x = rand((2, 4, 5, 5))
    xt = Tensor(x)
    a = block.relu(block.bn1(xt))
    branch = block.conv2(block.relu(block.bn2(block.conv1(a)))).numpy()
    y = block(xt).numpy()
    np.testing.assert_allclose(y, branch + x, rtol=1e-5, atol=1e-6)
    assert (y < 0).any()  # no final ReLU
    net = cifar_resnet(8, width=4, preact=True, seed=0)
    assert net.bn1 is None and net.bn_final is not None
    assert net(Tensor(rand((2, 3, 16, 16)))).shape == (2, 10)


# ----------------------------------------------------------------------- zero_init_residual

@pytest.mark.parametrize("make", [lambda g: BasicBlock(4, 4, generator=g), lambda g: Bottleneck(16, 4, generator=g)])
def test_zero_residual_post_activation_block_is_the_identity_on_nonnegative_input(make):
    block = perturb_bn(make(np.random.default_rng(0))).zero_residual_()
    assert np.all(block.last_bn.weight.data == 0) and np.all(block.last_bn.bias.data == 0)
    assert np.all(block.bn1.weight.data != 0)  # only the branch's last BN is zeroed
    x = rand((2, block.in_channels, 5, 5))
    for mode in (True, False):
        block.train(mode)
        np.testing.assert_array_equal(block(Tensor(np.abs(x))).numpy(), np.abs(x))  # exactly the identity
        # relu(0 + x): inputs of either sign come out as relu(x), not x; the ReLU gates the shortcut
        np.testing.assert_array_equal(block(Tensor(x)).numpy(), np.maximum(x, 0))


def test_zero_residual_post_activation_downsampling_block_is_its_shortcut():
    x = np.abs(rand((2, 4, 6, 6)))
    block_a = BasicBlock(4, 8, stride=2, shortcut="A", generator=np.random.default_rng(0)).zero_residual_()
    np.testing.assert_array_equal(block_a(Tensor(x)).numpy(), ZeroPadShortcut(4, 8, 2)(Tensor(x)).numpy())
    block_b = perturb_bn(BasicBlock(4, 8, stride=2, shortcut="B", generator=np.random.default_rng(0)))
    block_b.zero_residual_().eval()
    projected = block_b.downsample(Tensor(x)).numpy()  # a projection: not the identity, and of either sign
    assert (projected < 0).any()
    np.testing.assert_array_equal(block_b(Tensor(x)).numpy(), np.maximum(projected, 0))


def test_zero_residual_pre_activation_block_is_the_identity_on_any_input():
    block = perturb_bn(PreActBasicBlock(4, 4, generator=np.random.default_rng(0))).zero_residual_()
    assert np.all(block.last_conv.weight.data == 0)
    x = rand((2, 4, 5, 5))
    assert (x < 0).any()
    for mode in (True, False):
        block.train(mode)
        np.testing.assert_array_equal(block(Tensor(x)).numpy(), x)  # no ReLU after the addition
    down = perturb_bn(PreActBasicBlock(4, 8, stride=2, generator=np.random.default_rng(0))).zero_residual_().eval()
    a = down.relu(down.bn1(Tensor(x)))  # option A acts on the pre-activated input, as in the authors' code
    np.testing.assert_array_equal(down(Tensor(x)).numpy(), down.downsample(a).numpy())


@pytest.mark.parametrize("preact", [False, True])
def test_zero_init_residual_network_is_its_stem_and_shortcuts(preact):
    """With every branch at zero, the whole CIFAR net is stem -> shortcuts -> classifier."""
    model = cifar_resnet(14, width=4, preact=preact, zero_init_residual=True, seed=0)
    zeroed = [b.last_conv.weight if preact else b.last_bn.weight for b in model.blocks()]
    assert all(np.all(w.data == 0) for w in zeroed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert sum(np.all(m.weight.data == 0) for m in bns) == (0 if preact else len(model.blocks()))
    x = Tensor(rand((3, 3, 8, 8)))
    h = model.conv1(x) if preact else model.relu(model.bn1(model.conv1(x)))
    for b in model.blocks():
        if b.downsample is not None:
            h = b.downsample(b.relu(b.bn1(h)) if preact else h)
    if preact:
        h = model.relu(model.bn_final(h))
    want = model.fc(model.flatten(model.avgpool(h))).numpy()
    np.testing.assert_allclose(model(x).numpy(), want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("preact", [False, True])
def test_zero_initialised_branches_still_get_gradients(preact):
    """The branch outputs 0, but the zeroed weights get a gradient: training can move them at once,
    while the branch's earlier convolutions get none until then."""
    model = cifar_resnet(8, width=4, preact=preact, zero_init_residual=True, seed=0)
    minires.functional.cross_entropy(model(Tensor(rand((4, 3, 8, 8)))), np.array([0, 1, 2, 3])).backward()
    for b in model.blocks():
        zeroed = b.last_conv.weight if preact else b.last_bn.weight
        assert np.abs(zeroed.grad).max() > 0
        assert np.all(b.conv1.weight.grad == 0)


def test_zero_init_residual_in_imagenet_bottleneck_nets():
    model = imagenet_resnet(50, width=4, zero_init_residual=True, seed=0)
    assert all(np.all(b.bn3.weight.data == 0) and np.all(b.bn2.weight.data == 1) for b in model.blocks())
    assert not any(np.all(b.bn3.weight.data == 0) for b in imagenet_resnet(50, width=4, seed=0).blocks())
    with pytest.raises(ValueError, match="zero_init_residual act on residual branches"):
        cifar_resnet(20, plain=True, zero_init_residual=True)


# ----------------------------------------------------------------------- initialisation

def test_same_seed_same_network_and_he_initialisation():
    a, b, c = cifar_resnet(20, seed=3), cifar_resnet(20, seed=3), cifar_resnet(20, seed=4)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])
        assert v.dtype == (np.int64 if k.endswith("num_batches_tracked") else np.float32)
    assert not np.array_equal(a.conv1.weight.data, c.conv1.weight.data)
    w = a.layer3[1].conv1.weight.numpy()  # 64 x 64 x 3 x 3: fan_in 576
    assert abs(w.std() / np.sqrt(2 / 576) - 1) < 0.03
    assert all(np.all(m.weight.data == 1) and np.all(m.bias.data == 0)
               for m in a.modules() if isinstance(m, nn.BatchNorm2d))
    fan_out = cifar_resnet(20, init_mode="fan_out", seed=3).layer2[0].conv1.weight.numpy()  # 32 x 16 x 3 x 3
    assert abs(fan_out.std() / np.sqrt(2 / (32 * 9)) - 1) < 0.05


# ----------------------------------------------------------------------- gradients

def test_end_to_end_gradcheck_of_a_tiny_residual_net():
    model = perturb_bn(cifar_resnet(8, width=4, seed=0)).double()
    x = Tensor(rand((2, 3, 8, 8), seed=1, dtype=np.float64), requires_grad=True)
    # Training mode: batch statistics, the harder case for BN's backward. Parameters are
    # passed as extra inputs so that gradcheck perturbs (and checks) them too.
    checked = [model.conv1.weight, model.layer2[0].bn1.weight, model.layer3[0].bn2.bias, model.fc.weight]
    minires.gradcheck(lambda x, *params: model(x), [x, *checked])
    model.eval()
    minires.gradcheck(lambda x, *params: model(x), [x, model.layer1[0].bn2.weight])


def test_gradcheck_catches_a_wrong_gradient():
    model = cifar_resnet(8, width=4, seed=0).double()
    x = Tensor(rand((2, 3, 8, 8), seed=1, dtype=np.float64), requires_grad=True)
    with pytest.raises(minires.GradcheckError):  # the function is not what backward differentiates
        minires.gradcheck(lambda x: model(x) if minires.is_grad_enabled() else model(x) * 1.01, [x])


def test_resnet1202_forward_and_backward_do_not_hit_the_recursion_limit():
    model = cifar_resnet(1202, seed=0)
    assert n_params(model) == 19_421_274
    limit = sys.getrecursionlimit()
    y = model(Tensor(rand((2, 3, 8, 8))))
    (y * y).sum().backward()
    assert sys.getrecursionlimit() == limit
    assert model.conv1.weight.grad is not None and np.isfinite(model.conv1.weight.grad).all()
    assert all(p.grad is not None for p in model.parameters())
    del y
    model(Tensor(rand((2, 3, 8, 8))))  # a graph dropped without backward is freed without recursion


# ----------------------------------------------------------------------- state dict, modes

def test_state_dict_round_trip_gives_identical_outputs(tmp_path):
    model = cifar_resnet(14, width=4, seed=0)
    x = Tensor(rand((4, 3, 16, 16)))
    for _ in range(2):
        model(x)  # training-mode forwards update the running statistics
    np.savez(tmp_path / "m.npz", **model.state_dict())
    fresh = cifar_resnet(14, width=4, seed=1)
    with np.load(tmp_path / "m.npz") as f:
        fresh.load_state_dict(f)
    model.eval(), fresh.eval()
    np.testing.assert_array_equal(model(x).numpy(), fresh(x).numpy())
    assert list(fresh.state_dict())[:8] == [
        "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked",
        "layer1.0.conv1.weight", "layer1.0.bn1.weight"]


def test_strict_load_between_different_networks_fails_clearly():
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict: 'layer1.3.conv1.weight'"):
        cifar_resnet(32, seed=0).load_state_dict(cifar_resnet(20, seed=0).state_dict())
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\) in state_dict: 'layer1.3.conv1.weight'"):
        cifar_resnet(20, seed=0).load_state_dict(cifar_resnet(32, seed=0).state_dict())
    with pytest.raises(RuntimeError, match=r"size mismatch for fc.weight.*\(100, 64\).*\(10, 64\)"):
        cifar_resnet(20, seed=0).load_state_dict(cifar_resnet(20, num_classes=100, seed=0).state_dict())


def test_train_eval_switch_changes_batch_norm_behaviour():
    model = perturb_bn(cifar_resnet(8, width=4, seed=0))
    x = rand((4, 3, 16, 16))
    train_out = model(Tensor(x)).numpy()
    model.eval()
    eval_out = model(Tensor(x)).numpy()
    assert not np.allclose(train_out, eval_out, atol=1e-3)
    # Eval: each image's output is independent of the rest of the batch. Training: it is not.
    np.testing.assert_allclose(model(Tensor(x[:1])).numpy(), eval_out[:1], rtol=1e-5, atol=1e-6)
    model.train()
    assert not np.allclose(model(Tensor(x[:2])).numpy()[:1], model(Tensor(x)).numpy()[:1], atol=1e-3)


# ----------------------------------------------------------------------- the thought experiment

@pytest.mark.parametrize("build", [
    lambda: cifar_resnet(8, width=4, seed=0),
    lambda: cifar_resnet(8, width=4, shortcut="B", preact=True, seed=0),
    lambda: imagenet_resnet(50, width=2, num_classes=5, seed=0),
], ids=["cifar-basic-A", "cifar-preact-B", "imagenet-bottleneck-B"])
def test_appending_zero_branch_blocks_computes_exactly_the_same_function(build):
    shallow = perturb_bn(build())
    deeper = extend_with_identity(shallow, extra_blocks=2, seed=1)
    assert [len(s) for s in deeper.stages] == [n + 2 for n in shallow.config["layers"]]
    assert n_params(deeper) > n_params(shallow)
    x = rand((3, 3, 32, 32), seed=2)
    for mode in (False, True):
        shallow.train(mode), deeper.train(mode)
        np.testing.assert_array_equal(deeper(Tensor(x)).numpy(), shallow(Tensor(x)).numpy())
    # Without zeroing, the same deeper architecture computes something else.
    other = ResNet(**dict(shallow.config, layers=deeper.config["layers"]), seed=1)
    other.load_state_dict(shallow.state_dict(), strict=False)
    assert not np.array_equal(other.eval()(Tensor(x)).numpy(), shallow.eval()(Tensor(x)).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("depth, extra_blocks", [(8, 1), (8, 2), (14, (0, 1, 3)), (20, 1)])
def test_plain_net_extended_by_identity_blocks_is_bit_for_bit_the_same_in_eval_mode(depth, extra_blocks, dtype):
    """The paper's construction (Sec. 1) for a *plain* net: appended conv-BN-ReLU blocks set to
    the identity, the rest copied. Exactly equal logits in eval mode; in training mode the
    appended BNs use batch statistics, so the deeper net computes something else."""
    shallow = perturb_bn(cifar_resnet(depth, width=4, plain=True, seed=0)).to("cpu", dtype=dtype)
    deeper = extend_with_identity(shallow, extra_blocks=extra_blocks, seed=1)
    extra = extra_blocks if isinstance(extra_blocks, tuple) else (extra_blocks,) * 3
    assert deeper.config["layers"] == tuple(n + k for n, k in zip(shallow.config["layers"], extra))
    assert deeper.config["plain"] and all(p.dtype == dtype for p in deeper.parameters())
    x = Tensor(rand((3, 3, 32, 32), seed=2, dtype=dtype))
    shallow.eval(), deeper.eval()
    with use_algorithm("im2col"):  # Winograd's transforms round even a delta kernel's copy
        out = shallow(x).numpy()
        assert np.array_equal(deeper(x).numpy(), out)
    np.testing.assert_allclose(deeper(x).numpy(), out, rtol=1e-4 if dtype == np.float32 else 1e-10, atol=1e-5)
    shallow.train(), deeper.train()
    assert not np.allclose(deeper(x).numpy(), shallow(x).numpy(), atol=1e-3)


def test_plain_imagenet_net_extended_by_identity_blocks_is_the_same_in_eval_mode():
    shallow = perturb_bn(imagenet_resnet(18, width=4, num_classes=5, plain=True, seed=0)).eval()
    deeper = extend_with_identity(shallow, extra_blocks=(1, 0, 2, 1), seed=1).eval()
    x = Tensor(rand((2, 3, 64, 64), seed=3))
    with use_algorithm("im2col"):
        assert np.array_equal(deeper(x).numpy(), shallow(x).numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_identity_block_copies_non_negative_input_exactly(dtype):
    block = perturb_bn(BasicBlock(5, 5, plain=True)).to("cpu", dtype=dtype)
    assert plain_identity_(block) is block
    for bn in (block.bn1, block.bn2):  # the scale the op computes is exactly 1, the shift exactly 0
        scale = bn.weight.data * (1 / np.sqrt(bn.running_var + dtype(bn.eps)))
        assert np.all(scale == 1) and np.all(bn.bias.data == 0) and np.all(bn.running_mean == 0)
    x = rand((2, 5, 6, 7), seed=4, dtype=dtype)
    pos = Tensor(np.abs(x) * 1e3)  # large values too: no rounding anywhere
    block.eval()
    assert np.array_equal(block(pos).numpy(), pos.numpy())
    # Only on x >= 0 (the final ReLU clips), and only in eval mode (batch statistics otherwise).
    np.testing.assert_array_equal(block(Tensor(x)).numpy(), np.maximum(x, 0))
    block.train()
    assert not np.allclose(block(pos).numpy(), pos.numpy(), atol=1e-2)


def test_plain_identity_with_arbitrary_running_statistics_is_only_close():
    """Why plain_identity_ picks running_mean 0 and running_var 1 - eps: with the block's own
    statistics, gamma = sqrt(running_var + eps), beta = running_mean is the identity in exact
    arithmetic, but (x - m) * s + m rounds (s is not exactly 1; (x - m) + m need not be x)."""
    block = plain_identity_(BasicBlock(8, 8, plain=True)).eval()
    perturb_bn(block, seed=5)
    for bn in (block.bn1, block.bn2):
        bn.weight.data[...] = np.sqrt(bn.running_var + np.float32(bn.eps))
        bn.bias.data[...] = bn.running_mean
    x = Tensor(np.abs(rand((4, 8, 8, 8), seed=6)))
    y = block(x).numpy()
    np.testing.assert_allclose(y, x.numpy(), rtol=1e-6, atol=1e-6)
    assert not np.array_equal(y, x.numpy())


def test_identity_extension_and_plain_identity_reject_what_they_cannot_build():
    with pytest.raises(ValueError, match="extend_with_identity: .*plain.*bottleneck"):
        extend_with_identity(imagenet_resnet(50, width=2, plain=True))
    with pytest.raises(ValueError, match="extend_with_identity: .*preact=True"):
        extend_with_identity(cifar_resnet(8, width=4, plain=True, preact=True))
    with pytest.raises(ValueError, match="extra_blocks"):
        extend_with_identity(cifar_resnet(8, width=4, plain=True), extra_blocks=(1, 2))
    with pytest.raises(TypeError, match="expected a minires ResNet"):
        extend_with_identity(BasicBlock(4, 4))
    with pytest.raises(ValueError, match="plain_identity_: expected a plain block"):
        plain_identity_(BasicBlock(4, 4))
    with pytest.raises(ValueError, match=r"plain_identity_: .*in_channels=4, out_channels=8, stride=2"):
        plain_identity_(BasicBlock(4, 8, stride=2, plain=True))
    with pytest.raises(TypeError, match="plain_identity_: expected a minires BasicBlock"):
        plain_identity_(Bottleneck(16, 4, plain=True))


# ----------------------------------------------------------------------- stochastic depth

def test_stochastic_depth_probabilities_decay_linearly_to_one_half():
    model = cifar_resnet(20, stochastic_depth=0.5, seed=0)
    probs = [b.drop_prob for b in model.blocks()]
    np.testing.assert_allclose(probs, [0.5 * l / 9 for l in range(1, 10)])
    assert all(b.drop_prob == 0 for b in cifar_resnet(20).blocks())  # off by default


def test_stochastic_depth_block_drops_at_train_time_and_scales_at_test_time():
    block = perturb_bn(BasicBlock(4, 4, drop_prob=0.5, generator=np.random.default_rng(0)))
    x = Tensor(np.abs(rand((2, 4, 5, 5))))
    block.eval()
    branch = block.residual(x).numpy()
    np.testing.assert_allclose(block(x).numpy(), np.maximum(0.5 * branch + x.numpy(), 0), rtol=1e-6)
    block.train()
    full = np.maximum(block.residual(x).numpy() + x.numpy(), 0)
    dropped = kept = 0
    for _ in range(40):
        y = block(x).numpy()
        if np.array_equal(y, x.numpy()):  # branch dropped: y = relu(x) = x
            dropped += 1
        else:
            np.testing.assert_allclose(y, full, rtol=1e-6)  # kept, and not rescaled at train time
            kept += 1
    assert 8 <= dropped <= 32 and dropped + kept == 40  # Binomial(40, 0.5)
    with pytest.raises(ValueError, match="plain"):
        cifar_resnet(20, plain=True, stochastic_depth=0.5)


def test_stochastic_depth_is_reproducible_from_the_seed():
    x = Tensor(rand((2, 3, 8, 8)))
    outs = []
    for _ in range(2):
        model = cifar_resnet(14, width=4, stochastic_depth=0.5, seed=5)
        outs.append([model(x).numpy() for _ in range(5)])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(outs[0][0], o) for o in outs[0][1:])  # the draws do vary


def test_zero_init_residual_makes_every_block_start_as_identity():
    model = cifar_resnet(8, width=4, zero_init_residual=True, seed=0)
    assert all(np.all(b.bn2.weight.data == 0) for b in model.blocks())
    assert resnet56(plain=True).config["plain"]
