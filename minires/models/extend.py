"""The thought experiment of Sec. 3.1, as code: a deeper net that is exactly a shallower one.

"Let us consider a shallower architecture and its deeper counterpart that adds more layers
onto it. There exists a solution by construction to the deeper model: the added layers are
identity mapping, and the other layers are copied from the learned shallower model."

With residual blocks that construction is easy to write down: a block whose residual
branch outputs zero is y = relu(0 + x) = x (x >= 0 already, it comes out of a ReLU), so
appending such blocks at the end of each stage changes nothing. For a *plain* net the
appended layers would have to learn the identity themselves, which is the degradation
problem the paper addresses.
"""
from collections.abc import Sequence

from .resnet import ResNet


def extend_with_identity(model, extra_blocks=1, seed=None):
    """A deeper copy of ``model`` that computes exactly the same function.

    ``model`` is a residual ``ResNet`` (e.g. ``cifar_resnet(20)``). The result has
    ``extra_blocks`` more blocks at the end of every stage (an int, or one int per stage):
    its first blocks, stem, classifier and running statistics are copies of ``model``'s;
    each appended block has freshly initialised layers (from ``seed``) but a residual branch
    made to output exactly zero (last BN weight and bias 0; last conv 0 for pre-activation
    blocks), so it is an identity mapping. ResNet-20 extended by 1 block per stage is a
    ResNet-26 whose outputs equal ResNet-20's, in eval and in training mode.

    The appended blocks are identities only while their branch stays zero: training the
    deeper net is free to move away from this solution.
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"extend_with_identity: expected a minires ResNet, got {type(model).__name__}")
    cfg = dict(model.config)
    if cfg["plain"]:
        raise ValueError(
            "extend_with_identity: a plain network has no shortcuts, so a block with a zero branch outputs "
            "relu(0) = 0, not its input: plain layers would have to *learn* the identity (the degradation problem)"
        )
    if cfg["stochastic_depth"]:
        raise ValueError(
            "extend_with_identity: stochastic depth's drop probabilities depend on each block's position in the "
            "network, so a deeper net would not compute the same function; build the model with stochastic_depth=0"
        )
    stages = len(cfg["layers"])
    extra = [extra_blocks] * stages if not isinstance(extra_blocks, Sequence) else list(extra_blocks)
    if len(extra) != stages or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in extra):
        raise ValueError(
            f"extend_with_identity: extra_blocks must be an int >= 0 or {stages} of them (one per stage), "
            f"got {extra_blocks!r}"
        )
    cfg["layers"] = tuple(n + k for n, k in zip(cfg["layers"], extra))
    deeper = ResNet(**cfg, seed=seed)

    # Same device and dtype as the original, then copy every shared entry across: block i of
    # each stage keeps its name (layer2.0.conv1.weight, ...), so the names line up.
    params = list(model.parameters())
    deeper.to(params[0].device, dtype=params[0].dtype)
    result = deeper.load_state_dict(model.state_dict(), strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # every old entry has a place
    for stage, n_old in zip(deeper.stages, model.config["layers"]):
        for block in list(stage)[n_old:]:
            block.zero_residual_()
    return deeper.train(model.training)
