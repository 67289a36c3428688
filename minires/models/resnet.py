"""``ResNet``: stem -> stages of residual blocks -> global average pooling -> fully connected.

One class builds every network of the paper; ``cifar_resnet`` (Sec. 4.2) and
``imagenet_resnet`` (Table 1) only choose its arguments:

=============  ==============================  ===========================  ==============
stem           layers                          stage widths (planes)        classifier
=============  ==============================  ===========================  ==============
``'cifar'``    3x3 conv, 16 filters, BN, ReLU  16, 32, 64 (n blocks each)   pool, fc-10
``'imagenet'`` 7x7/2 conv 64, BN, ReLU,        64, 128, 256, 512            pool, fc-1000
               3x3/2 max pool
=============  ==============================  ===========================  ==============

The first block of every stage after the first has stride 2: the feature map halves and
the number of filters doubles, so each layer's cost stays the same (Sec. 3.3).

Attribute names (``conv1``, ``bn1``, ``layer1``..``layer4``, ``fc``; inside blocks ``conv1``,
``bn1``, ..., ``downsample``) are torchvision's, so state-dict keys read the same.
"""
from .. import nn
from .._checks import as_generator, check_int, shortcut_option
from .blocks import BLOCKS, conv3x3, he_init_


def _checked_arguments(block, layers, widths, stem, num_classes, in_channels, plain, shortcut, preact,
                       stochastic_depth, zero_init_residual, init_mode):
    """``ResNet``'s arguments checked: (layers, widths, num_classes, in_channels) as ints, or a clear error."""
    if (block, bool(preact)) not in BLOCKS:
        raise ValueError(f"ResNet: block must be 'basic' or 'bottleneck', got {block!r}")
    layers, widths = tuple(layers), tuple(widths)
    if not layers or len(layers) != len(widths):
        raise ValueError(f"ResNet: layers {layers} and widths {widths} must be non-empty and of the same length")
    layers = tuple(check_int("ResNet", "each entry of layers", n, minimum=1) for n in layers)
    widths = tuple(check_int("ResNet", "each entry of widths", w, minimum=1) for w in widths)
    if stem not in ("cifar", "imagenet"):
        raise ValueError(f"ResNet: stem must be 'cifar' or 'imagenet', got {stem!r}")
    shortcut_option("ResNet", shortcut)
    if not 0.0 <= stochastic_depth < 1.0:
        raise ValueError(f"ResNet: stochastic_depth (drop probability of the last block) must be in [0, 1), "
                         f"got {stochastic_depth}")
    num_classes = check_int("ResNet", "num_classes", num_classes, minimum=1)
    in_channels = check_int("ResNet", "in_channels", in_channels, minimum=1)
    if init_mode not in ("fan_in", "fan_out"):
        raise ValueError(f"ResNet: init_mode must be 'fan_in' or 'fan_out', got {init_mode!r}")
    if plain and (stochastic_depth or zero_init_residual):
        raise ValueError("ResNet: stochastic_depth and zero_init_residual act on residual branches; "
                         "a plain network has none")
    return layers, widths, num_classes, in_channels


class ResNet(nn.Module):
    """A residual (or, with ``plain=True``, plain) network.

    Args:
        block: ``'basic'`` (two 3x3 convs) or ``'bottleneck'`` (1x1-3x3-1x1, 4x expansion).
        layers: number of blocks in each stage, e.g. ``(3, 3, 3)`` for CIFAR ResNet-20.
        widths: planes of each stage, e.g. ``(16, 32, 64)``; the stem has ``widths[0]`` filters.
        stem: ``'cifar'`` (3x3 conv) or ``'imagenet'`` (7x7/2 conv and 3x3/2 max pooling).
        num_classes, in_channels: sizes of the output and of the input images.
        plain: drop every shortcut (the paper's plain baselines).
        shortcut: ``'A'``, ``'B'`` or ``'C'``, the paper's options for shortcuts (blocks.py).
        preact: use pre-activation blocks (He et al. 2016) and a final BN-ReLU.
        stochastic_depth: drop probability of the *last* block, p_L (0 = off; Huang et al. use 0.5).
            Block l of L has p_l = l / L * p_L, a linear decay of the survival probability.
        zero_init_residual: start every residual branch at zero (Goyal et al. 2017; torchvision's
            option of the same name). Post-activation blocks get the weight (gamma) of their last BN
            set to 0 (its bias is 0 already), so F(x) = 0 and a block computes relu(shortcut(x)):
            the identity on its input, which is non-negative (it comes out of a ReLU), wherever
            the shortcut is the identity. Pre-activation branches end with a convolution, whose
            weights are set to 0: the block computes shortcut, i.e. x itself for identity
            shortcuts. Blocks that change the shape still subsample (option A) or project (B, C).
            Only the branch's output is zero: the zeroed weights get non-zero gradients, so
            training moves them away from 0 at the first step.
        init_mode: ``'fan_in'`` or ``'fan_out'`` for He initialisation (see ``he_init_``).
        seed: an int, None, or a ``numpy.random.Generator``: all random numbers of the network
            (initial weights, and stochastic depth's coin flips) come from it. The generator's
            state is not part of ``state_dict``: a resumed run draws different coin flips.
    """

    def __init__(self, block, layers, widths, stem="cifar", num_classes=10, in_channels=3, plain=False,
                 shortcut="A", preact=False, stochastic_depth=0.0, zero_init_residual=False, init_mode="fan_in",
                 seed=None):
        super().__init__()
        layers, widths, num_classes, in_channels = _checked_arguments(
            block, layers, widths, stem, num_classes, in_channels, plain, shortcut, preact, stochastic_depth,
            zero_init_residual, init_mode)
        # Everything needed to build this network again (``extend_with_identity`` uses it).
        self.config = dict(block=block, layers=layers, widths=widths, stem=stem, num_classes=num_classes,
                           in_channels=in_channels, plain=bool(plain), shortcut=shortcut, preact=bool(preact),
                           stochastic_depth=float(stochastic_depth), zero_init_residual=bool(zero_init_residual),
                           init_mode=init_mode)
        rng = as_generator(seed)
        block_cls = BLOCKS[(block, bool(preact))]

        # Stem. A pre-activation CIFAR net has no BN-ReLU here: the first block begins with one.
        if stem == "cifar":
            self.conv1 = conv3x3(in_channels, widths[0], 1, rng)
            self.maxpool = None
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False, generator=rng)
        self.bn1 = None if (preact and stem == "cifar") else nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        if stem == "imagenet":
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        # Stages: layer1, layer2, ...; the first block of each later stage halves H and W.
        total, index, channels = sum(layers), 0, widths[0]
        for i, (n, planes) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                index += 1
                drop = stochastic_depth * index / total  # Huang et al.: p_l = l/L * p_L
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block_cls(channels, planes, stride, shortcut, plain, drop, rng))
                channels = planes * block_cls.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))

        self.bn_final = nn.BatchNorm2d(channels) if preact else None  # pre-activation nets end with BN-ReLU
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(channels, num_classes, generator=rng)

        he_init_(self, mode=init_mode, generator=rng)
        if zero_init_residual:
            for b in self.blocks():
                b.zero_residual_()

    @property
    def stages(self):
        """The stages (``layer1``, ``layer2``, ...) in order, each a Sequential of blocks."""
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.config["layers"]))]

    def blocks(self):
        """Every residual (or plain) block, from input to output."""
        return [b for stage in self.stages for b in stage]

    def forward(self, x):
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.relu(self.bn1(x))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for stage in self.stages:
            x = stage(x)
        if self.bn_final is not None:
            x = self.relu(self.bn_final(x))
        return self.fc(self.flatten(self.avgpool(x)))
