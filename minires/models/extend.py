"""The thought experiment of the paper's introduction (Sec. 1), as code: a deeper net that is
exactly a shallower one.

"Let us consider a shallower architecture and its deeper counterpart that adds more layers
onto it. There exists a solution by construction to the deeper model: the added layers are
identity mapping, and the other layers are copied from the learned shallower model."

The construction exists for plain nets *and* residual nets; what differs is where the
identity sits among an added block's weights:

* residual block, y = relu(F(x) + x): the identity is F = 0, e.g. the branch's last BN with
  gamma = beta = 0. Zero branch weights: where weight decay pulls and near where small
  initial weights start.
* plain block, y = relu(BN(conv(relu(BN(conv(x)))))): the identity (on x >= 0, in eval mode)
  is one specific non-zero point: each 3x3 kernel a "delta" (1 at its centre, from channel c
  to channel c, 0 elsewhere), each BN undoing its own normalisation
  (gamma = sqrt(running_var + eps), beta = running_mean).

The paper's finding is that deeper plain nets end with a *higher training error* (the
degradation problem), so the solver does not find this constructed solution (or one as
good). Its explanation (Sec. 3.1), a hypothesis, is that solvers have difficulty
approximating identity mappings with several nonlinear layers, and that with residual
learning they "may simply drive the weights of the multiple nonlinear layers toward zero".
"""
from collections.abc import Sequence

from ..backend import get_array_module
from ..nn import init
from .blocks import BasicBlock
from .resnet import ResNet


def plain_identity_(block):
    """Make a plain ``BasicBlock`` the identity on non-negative inputs in eval mode, in place.

    y = relu(BN2(conv2(relu(BN1(conv1(x)))))) = x for every x >= 0 when

    * conv1 and conv2 are delta kernels: w[c, c, 1, 1] = 1, every other weight 0, so each
      convolution copies its input (with padding 1 the output has the input's size);
    * BN1 and BN2 (eval mode: y = (x - running_mean) * gamma / sqrt(running_var + eps) + beta)
      undo their own normalisation: gamma = sqrt(running_var + eps), beta = running_mean.

    The two ReLUs then see x >= 0 and pass it on. Exactly, not only up to rounding: the
    statistics are chosen as running_mean = 0 and running_var = 1 - eps (rounded in the
    parameters' dtype so that running_var + eps is exactly 1), hence gamma = sqrt(1) = 1 and
    beta = 0. The op's per-channel scale gamma * (1 / sqrt(running_var + eps)) is then exactly
    1 and its shift exactly 0, and each step is exact: x - 0 = x, x * 1 = x, x + 0 = x; the
    convolution's sums are 1 * x plus products with 0. (With other statistics the same
    recipe holds in exact arithmetic, but (x - m) * s + m rounds: s is not exactly 1, and
    (x - m) + m need not give back x.)

    In training mode BN normalises with the *batch's* statistics, so the block is not the
    identity there (no fixed weights are: each batch has its own mean and variance). On a GPU
    the convolution's matrix product must run in full float32 (CuPy's default; TF32 would
    round x to 10 bits of mantissa).

    Returns ``block``.
    """
    if type(block) is not BasicBlock:
        raise TypeError(f"plain_identity_: expected a minires BasicBlock (post-activation), got {type(block).__name__}")
    if not block.plain:
        raise ValueError("plain_identity_: expected a plain block (plain=True); a residual block is the identity "
                         "when its branch outputs zero: use block.zero_residual_()")
    if block.stride != 1 or block.in_channels != block.out_channels:
        raise ValueError(
            f"plain_identity_: only a block that keeps the shape can be the identity, got in_channels="
            f"{block.in_channels}, out_channels={block.out_channels}, stride={block.stride}")
    for conv in (block.conv1, block.conv2):
        w = conv.weight.data
        xp = get_array_module(w)
        k = conv.kernel_size[0]
        init.zeros_(conv.weight)
        channels = xp.arange(w.shape[0])
        w[channels, channels, k // 2, k // 2] = 1  # the delta kernel: out channel c copies in channel c
    for bn in (block.bn1, block.bn2):
        if not (bn.affine and bn.track_running_stats):
            raise ValueError("plain_identity_: the block's BNs need affine parameters and running statistics")
        dtype = bn.running_var.dtype.type
        one, eps = dtype(1), dtype(bn.eps)  # the op adds eps in the data's dtype
        var = one - eps
        if var + eps != one:  # cannot happen for eps < 1 with round-to-nearest; checked, not assumed
            raise RuntimeError(f"plain_identity_: running_var + eps is not exactly 1 in {bn.running_var.dtype}")
        bn.running_mean[...] = 0
        bn.running_var[...] = var
        init.ones_(bn.weight)   # gamma = sqrt(running_var + eps) = sqrt(1)
        init.zeros_(bn.bias)    # beta = running_mean = 0
    return block


def extend_with_identity(model, extra_blocks=1, seed=None):
    """A deeper copy of ``model`` that computes exactly the same function.

    ``model`` is a ``ResNet``, residual or plain (e.g. ``cifar_resnet(20)`` or
    ``cifar_resnet(20, plain=True)``). The result has ``extra_blocks`` more blocks at the end
    of every stage (an int, or one int per stage): its first blocks, stem, classifier and
    running statistics are copies of ``model``'s, and each appended block is an identity
    mapping (its input comes out of a ReLU, so it is >= 0):

    * residual net: the appended block's layers are freshly initialised (from ``seed``) but
      its branch outputs exactly zero (last BN weight and bias 0; last conv 0 for
      pre-activation blocks): y = relu(0 + x) = x. The outputs equal ``model``'s bit for bit
      in eval *and* in training mode.
    * plain net (basic post-activation blocks only): the appended block is set by
      ``plain_identity_`` (delta kernels, BNs that undo their normalisation). The outputs
      equal ``model``'s bit for bit in **eval mode only**: in training mode the appended BNs
      normalise with batch statistics, and the deeper net computes something else. Bit for bit
      also needs im2col convolutions (``with minires.ops.conv.use_algorithm("im2col"):``): a
      delta kernel copies exactly in im2col's sums of products with zeros, while Winograd's
      input and output transforms round (the outputs then agree to float rounding only).

    The appended blocks are identities only at these weights: training the deeper net is
    free to move away from this solution.
    """
    cfg = _deeper_config(model, extra_blocks)
    deeper = ResNet(**cfg, seed=seed)

    # Same device and dtype as the original, then copy every shared entry across: block i of
    # each stage keeps its name (layer2.0.conv1.weight, ...), so the names line up.
    params = list(model.parameters())
    deeper.to(params[0].device, dtype=params[0].dtype)
    result = deeper.load_state_dict(model.state_dict(), strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # every old entry has a place
    for stage, n_old in zip(deeper.stages, model.config["layers"]):
        for block in list(stage)[n_old:]:
            if cfg["plain"]:
                plain_identity_(block)
            else:
                block.zero_residual_()
    return deeper.train(model.training)


def _deeper_config(model, extra_blocks):
    """``model``'s config with ``extra_blocks`` more blocks per stage, after checking that an
    identity extension exists for it."""
    if not isinstance(model, ResNet):
        raise TypeError(f"extend_with_identity: expected a minires ResNet, got {type(model).__name__}")
    cfg = dict(model.config)
    if cfg["stochastic_depth"]:
        raise ValueError(
            "extend_with_identity: stochastic depth's drop probabilities depend on each block's position in the "
            "network, so a deeper net would not compute the same function; build the model with stochastic_depth=0"
        )
    if cfg["plain"] and (cfg["block"] != "basic" or cfg["preact"]):
        raise ValueError(
            "extend_with_identity: for plain nets the identity construction is written for the paper's basic "
            f"post-activation block (conv-BN-ReLU twice), got block={cfg['block']!r}, preact={cfg['preact']}: a plain "
            "bottleneck squeezes 4*planes channels through planes, and a plain pre-activation block's ReLU comes "
            "first and would clip its (possibly negative) input"
        )
    stages = len(cfg["layers"])
    extra = [extra_blocks] * stages if not isinstance(extra_blocks, Sequence) else list(extra_blocks)
    if len(extra) != stages or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in extra):
        raise ValueError(
            f"extend_with_identity: extra_blocks must be an int >= 0 or {stages} of them (one per stage), "
            f"got {extra_blocks!r}"
        )
    cfg["layers"] = tuple(n + k for n, k in zip(cfg["layers"], extra))
    return cfg
