"""Checks for notebook 04's exercises: the residual block's forward pass and option A's shortcut.

* ``check_basic_block_forward(fn)``: ``fn(block, x)`` must compute what ``block(x)`` computes
  for a minires ``BasicBlock``, y = relu(F(x) + shortcut(x)) (y = relu(F(x)) when plain), with
  F(x) = bn2(conv2(relu(bn1(conv1(x))))). Compared on the same weights: the output in training
  and eval mode, and the gradients of x and of every parameter for a random upstream gradient.
* ``check_option_a_shortcut(fn)``: ``fn(x, out_channels, stride)`` must compute what
  ``ZeroPadShortcut(C, out_channels, stride)(x)`` computes: y[:, :C] = x[:, :, ::s, ::s],
  y[:, C:] = 0. Compared on the output and on the gradient of x.

Everything runs in float64 on small random inputs, with random BN parameters (so that a ReLU in
the wrong place changes the result). When the output is wrong, the check also tries the usual
mistakes and, when one of them matches, says which.
"""
import numpy as np

from .. import functional as F
from .. import nn
from ..engine import Tensor
from ..models.blocks import BasicBlock, ZeroPadShortcut
from .check import ExerciseFailed, NotDone, check, compare, name_of, returned

_RTOL, _ATOL = 1e-9, 1e-12  # float64 throughout: the learner's ops are the library's, so only rounding differs


def _random_bn_(block, rng):
    """Random gamma, beta and running statistics: with gamma = 1, beta = 0 some mistakes hide."""
    for bn in (m for m in block.modules() if isinstance(m, nn.BatchNorm2d)):
        c = bn.num_features
        bn.weight.data[...] = rng.uniform(0.5, 1.5, c)
        bn.bias.data[...] = rng.uniform(-0.5, 0.5, c)
        bn.running_mean[...] = rng.uniform(-0.5, 0.5, c)
        bn.running_var[...] = rng.uniform(0.5, 2.0, c)
    return block


def _describe(block):
    kind = "plain " if block.plain else ""
    shortcut = "" if block.plain else (
        ", identity shortcut" if block.downsample is None else f", option {block.shortcut_option} shortcut")
    return f"{kind}BasicBlock({block.in_channels}, {block.planes}, stride={block.stride}){shortcut}"


# ------------------------------------------------------------------ exercise: BasicBlock.forward

def _block_mistakes(block, x):
    """The usual wrong forwards, each as (description, output array), computed with the library."""
    def branch(inner_relu=True):
        out = block.bn1(block.conv1(x))
        return block.bn2(block.conv2(F.relu(out) if inner_relu else out))

    f = branch().numpy()
    s = block.shortcut(x).numpy()
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    if block.plain:
        mistakes = [("you added a shortcut to a plain block: with block.plain there is none, y = relu(F(x))",
                     relu(f + x.numpy()) if f.shape == x.shape else None),
                    ("the final ReLU is missing: y = relu(F(x))", f)]
    else:
        mistakes = [("you applied the ReLU before the addition, relu(F(x)) + x; the paper's block adds first: "
                     "y = relu(F(x) + shortcut(x))", relu(f) + s),
                    ("the final ReLU is missing: y = relu(F(x) + shortcut(x))", f + s),
                    ("the shortcut is missing: y = relu(F(x) + shortcut(x)) unless block.plain", relu(f))]
    mistakes.append(("the ReLU between the two convolutions is missing: F(x) = bn2(conv2(relu(bn1(conv1(x)))))",
                     relu(branch(inner_relu=False).numpy() + (0 if block.plain else s))))
    return [(what, y) for what, y in mistakes if y is not None]


def _diagnose(got, mistakes, default):
    for what, y in mistakes:
        if got is not None and got.shape == y.shape and np.allclose(got, y, rtol=1e-7, atol=1e-9):
            return what
    return default


_GRAPH_HINT = ("the output matches, so the graph is broken: compute with minires ops on Tensors (the block's "
               "layers, Tensor indexing, F.pad), not NumPy on .data or .numpy(), which autograd does not see")


def _require_graph(what, y, inputs):
    if not y.requires_grad:
        raise ExerciseFailed(f"{what}: your output does not require grad, so no gradient can reach {inputs}"
                             f"\n  hint: {_GRAPH_HINT}")


def _call(what, fn, *args, hint="", expected="a minires Tensor"):
    """``fn(*args)``, which must return a Tensor; an exception or anything else returned becomes a
    failure that names the case (and a hint when one fits)."""
    try:
        y = fn(*args)
    except NotDone:
        raise
    except Exception as exc:
        tail = f"\n  hint: {hint}" if hint else ""
        raise ExerciseFailed(f"{what}: your function raised {type(exc).__name__}: {exc}{tail}") from None
    if not isinstance(y, Tensor):
        raise returned(name_of(fn), y, expected, where=what)
    return y


_BLOCK_HINT = ("y = relu(bn2(conv2(relu(bn1(conv1(x))))) + block.shortcut(x)), or without the shortcut "
               "when block.plain; the final ReLU comes after the addition")


def _run_block_case(fn, block, x_np, g_np):
    params = dict(block.named_parameters())

    def forward_backward(forward):
        block.zero_grad()
        x = Tensor(x_np.copy(), requires_grad=True)
        y = forward(x)
        return x, y

    # Training mode (batch statistics): the output, then the gradients.
    what = _describe(block)
    hint = ("F(x) has the shape of the block's output, not of x, when the block downsamples: add "
            "block.shortcut(x), which subsamples and pads x" if block.downsample is not None else "")
    block.train()
    expected = "a minires Tensor (use the block's layers and minires ops, so that the graph is recorded)"
    x, y = forward_backward(lambda t: _call(what, fn, block, t, hint=hint, expected=expected))
    x_ref, y_ref = forward_backward(block)
    got = y.numpy()
    compare(f"{what}, training mode: output", got, y_ref, rtol=_RTOL, atol=_ATOL,
            hint=_diagnose(got, _block_mistakes(block, Tensor(x_np)), _BLOCK_HINT))
    _require_graph(what, y, "x or the weights")
    block.zero_grad()
    y.backward(g_np)
    grads = {"x": x.grad, **{name: p.grad for name, p in params.items()}}
    block.zero_grad()
    y_ref.backward(g_np)
    expected = {"x": x_ref.grad, **{name: p.grad for name, p in params.items()}}
    for name, g in grads.items():
        compare(f"{what}: gradient of {name}", g, expected[name], rtol=1e-8, atol=1e-10, hint=_GRAPH_HINT)
    # Eval mode (running statistics): the same layers, so the same answer.
    block.eval()
    got = _call(what, fn, block, Tensor(x_np), hint=hint, expected=expected).numpy()
    compare(f"{what}, eval mode: output", got, block(Tensor(x_np)), rtol=_RTOL, atol=_ATOL,
            hint=_diagnose(got, _block_mistakes(block, Tensor(x_np)), _BLOCK_HINT))


def check_basic_block_forward(fn, seed=0):
    """Check ``fn(block, x)`` against ``block(x)`` for four ``BasicBlock``s: identity shortcut,
    option A (stride 2, 4 -> 8 channels), option B (projection), and a plain block.

    Same weights (random BN parameters and statistics), float64, x >= 0 (a block's input comes
    out of a ReLU); the output in training and in eval mode, and the gradients of x and of each
    parameter for a random upstream gradient. Returns a ``CheckResult``.
    """
    def run():
        rng = np.random.default_rng(seed)
        blocks = [BasicBlock(4, 4, generator=rng), BasicBlock(4, 8, stride=2, shortcut="A", generator=rng),
                  BasicBlock(4, 8, stride=2, shortcut="B", generator=rng), BasicBlock(4, 4, plain=True, generator=rng)]
        for block in blocks:
            _random_bn_(block.to(dtype=np.float64), rng)
            x = np.maximum(rng.standard_normal((3, 4, 7, 7)), 0)
            g = rng.standard_normal(block(Tensor(x)).shape)
            _run_block_case(fn, block, x, g)
        return (f"output (training and eval mode) and the gradients of x and of all parameters match the library's "
                f"block for {len(blocks)} blocks: identity shortcut, option A, option B, plain")
    return check("BasicBlock forward", run)


# ------------------------------------------------------------------ exercise: option A's shortcut

def _shortcut_hint(got, x, out_channels, stride):
    """Name the usual option-A mistake that ``got`` (an array) matches, or give the general hint."""
    n, c, h, w = x.shape
    sub = x[:, :, ::stride, ::stride]
    general = ("y[:, :C] = x[:, :, ::stride, ::stride] and y[:, C:] = 0: subsample with a step slice, then "
               "F.pad(y, (0, 0, 0, 0, 0, out_channels - C)) (pairs from the last dimension: W, H, then C)")
    if got is None:
        return general
    if got.shape[2:] == (h, w) and stride > 1:
        return "the spatial size is unchanged: subsample first, x[:, :, ::stride, ::stride]"
    if got.shape[1] != out_channels:
        return (f"the output needs {out_channels} channels: pad the channel dimension, which is the *third* "
                f"(before, after) pair of F.pad (pairs start from the last dimension, W)")
    if got.shape == (n, out_channels) + sub.shape[2:]:
        if np.array_equal(got[:, out_channels - c:], sub) and out_channels > c:
            return "the zero channels go *after* the input's channels: pad (0, out_channels - C), not (out_channels - C, 0)"
        if stride > 1 and np.array_equal(got[:, :c], x[:, :, 1::stride, 1::stride]):
            return "subsample from the first pixel: x[:, :, ::stride, ::stride], not 1::stride"
    return general


def check_option_a_shortcut(fn, seed=0):
    """Check ``fn(x, out_channels, stride)`` against ``ZeroPadShortcut(C, out_channels, stride)(x)``:
    the output and the gradient of x for a random upstream gradient, float64, on four cases
    (odd sizes, a stride of 1, more than doubled channels). Returns a ``CheckResult``.
    """
    cases = [((2, 3, 6, 6), 6, 2), ((2, 3, 7, 5), 5, 2), ((1, 4, 4, 4), 4, 1), ((2, 2, 8, 8), 8, 2)]

    def run():
        rng = np.random.default_rng(seed)
        for shape, out_channels, stride in cases:
            what = f"x of shape {shape}, out_channels={out_channels}, stride={stride}"
            x_np = rng.standard_normal(shape)
            x = Tensor(x_np.copy(), requires_grad=True)
            y = _call(what, fn, x, out_channels, stride)
            x_ref = Tensor(x_np.copy(), requires_grad=True)
            y_ref = ZeroPadShortcut(shape[1], out_channels, stride)(x_ref)
            got = y.numpy()
            compare(f"{what}: output", got, y_ref, rtol=0, atol=0,
                    hint=_shortcut_hint(got, x_np, out_channels, stride))
            _require_graph(what, y, "x")
            g = rng.standard_normal(y_ref.shape)
            y.backward(g)
            y_ref.backward(g)
            compare(f"{what}: gradient of x", x.grad, x_ref.grad, rtol=0, atol=0, hint=_GRAPH_HINT)
        return f"output and gradient match ZeroPadShortcut on {len(cases)} cases (odd sizes, stride 1 and 2)"
    return check("option A shortcut", run)
