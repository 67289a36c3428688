"""The CIFAR-10 networks of Sec. 4.2: depth 6n+2, three stages of n blocks on 32x32 images.

    output map size   32x32   16x16   8x8
    # layers          1+2n    2n      2n      (+ the fc layer: 6n+2 weighted layers)
    # filters         16      32      64

The stem is one 3x3 convolution; subsampling is done by stride-2 convolutions; the network
ends with global average pooling and a 10-way fully connected layer. The shortcuts are
identities, with option A (zero padding) where the shape changes, so residual nets have
exactly the parameters of their plain twins: 0.27M for ResNet-20 up to 19.4M for ResNet-1202.
"""
import numpy as np

from .resnet import ResNet

PAPER_DEPTHS = (20, 32, 44, 56, 110, 1202)


def cifar_blocks_per_stage(depth, block="basic"):
    """n for a CIFAR net of ``depth`` = 6n+2 (basic blocks, 2 layers each) or 9n+2 (bottlenecks)."""
    per_block = {"basic": 2, "bottleneck": 3}
    if block not in per_block:
        raise ValueError(f"cifar_resnet: block must be 'basic' or 'bottleneck', got {block!r}")
    k = 3 * per_block[block]  # weighted layers per n: 3 stages of n blocks
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < k + 2 or (depth - 2) % k:
        examples = "20, 32, 44, 56, 110, 1202" if block == "basic" else "29, 56, 110, 164, 1001"
        raise ValueError(
            f"cifar_resnet: depth must be {k}n+2 for an integer n >= 1 with {block} blocks "
            f"(e.g. {examples}), got {depth!r}"
        )
    return (int(depth) - 2) // k


def cifar_resnet(depth, plain=False, shortcut="A", num_classes=10, in_channels=3, *, width=16, block="basic",
                 preact=False, stochastic_depth=0.0, zero_init_residual=False, init_mode="fan_in", seed=None):
    """The paper's CIFAR-10 ResNet (or plain net, ``plain=True``) of the given ``depth``.

    ``depth`` = 6n+2 (20, 32, 44, 56, 110, 1202 in the paper; 8 is the smallest). ``width`` is
    the number of filters of the first stage (16 in the paper; stages have width, 2*width,
    4*width); a small width makes tiny nets for tests. ``block='bottleneck'`` builds the
    9n+2 nets of the pre-activation paper (ResNet-164 has n = 18). ``seed`` (int, None or a
    numpy Generator) makes the initial weights reproducible. Other options: see ``ResNet``.

    >>> model = cifar_resnet(20, seed=0)      # ResNet-20, option A, 269,722 parameters
    >>> model = cifar_resnet(110, preact=True, zero_init_residual=True)  # every branch starts at 0
    """
    n = cifar_blocks_per_stage(depth, block)
    return ResNet(block, (n, n, n), (width, 2 * width, 4 * width), stem="cifar", num_classes=num_classes,
                  in_channels=in_channels, plain=plain, shortcut=shortcut, preact=preact,
                  stochastic_depth=stochastic_depth, zero_init_residual=zero_init_residual, init_mode=init_mode,
                  seed=seed)


def resnet20(**kwargs):
    """CIFAR ResNet-20 (0.27M parameters); ``resnet20(plain=True)`` is plain-20."""
    return cifar_resnet(20, **kwargs)


def resnet32(**kwargs):
    """CIFAR ResNet-32 (0.46M parameters)."""
    return cifar_resnet(32, **kwargs)


def resnet44(**kwargs):
    """CIFAR ResNet-44 (0.66M parameters)."""
    return cifar_resnet(44, **kwargs)


def resnet56(**kwargs):
    """CIFAR ResNet-56 (0.85M parameters)."""
    return cifar_resnet(56, **kwargs)


def resnet110(**kwargs):
    """CIFAR ResNet-110 (1.7M parameters)."""
    return cifar_resnet(110, **kwargs)


def resnet1202(**kwargs):
    """CIFAR ResNet-1202 (19.4M parameters)."""
    return cifar_resnet(1202, **kwargs)
