"""The ImageNet networks of Table 1: ResNet-18, 34 (basic blocks), 50, 101, 152 (bottlenecks).

    layer name   output    18        34        50         101        152
    conv1        112x112   7x7, 64, stride 2
    conv2_x      56x56     3x3 max pool, stride 2; then [2, 3, 3, 3, 3] blocks, 64 planes
    conv3_x      28x28     [2, 4, 4, 4, 8] blocks, 128 planes
    conv4_x      14x14     [2, 6, 6, 23, 36] blocks, 256 planes
    conv5_x      7x7       [2, 3, 3, 3, 3] blocks, 512 planes
                 1x1       average pool, 1000-d fc, softmax
    FLOPs (multiply-adds)  1.8e9  3.6e9  3.8e9  7.6e9  11.3e9

The default shortcut is option B (projections where the shape changes), as in the paper's
deeper ImageNet nets; torchvision's ResNets have the same parameters (11,689,512 for
ResNet-18 ... 60,192,808 for ResNet-152).
"""
from .resnet import ResNet

IMAGENET_CONFIGS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}

PAPER_DEPTHS = tuple(IMAGENET_CONFIGS)


def imagenet_resnet(depth, plain=False, shortcut="B", num_classes=1000, in_channels=3, *, width=64, preact=False,
                    stochastic_depth=0.0, zero_init_residual=False, init_mode="fan_in", seed=None):
    """The paper's ImageNet ResNet (or plain net) of ``depth`` 18, 34, 50, 101 or 152 (Table 1).

    ``width`` is the number of filters of the stem and of the first stage (64 in the paper).
    Other options: see ``ResNet``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth not in IMAGENET_CONFIGS:
        raise ValueError(f"imagenet_resnet: depth must be one of 18, 34, 50, 101, 152 (Table 1), got {depth!r}")
    block, layers = IMAGENET_CONFIGS[depth]
    return ResNet(block, layers, (width, 2 * width, 4 * width, 8 * width), stem="imagenet", num_classes=num_classes,
                  in_channels=in_channels, plain=plain, shortcut=shortcut, preact=preact,
                  stochastic_depth=stochastic_depth, zero_init_residual=zero_init_residual, init_mode=init_mode,
                  seed=seed)


def resnet18(**kwargs):
    """ImageNet ResNet-18 (11.7M parameters, 1.8e9 multiply-adds at 224x224)."""
    return imagenet_resnet(18, **kwargs)


def resnet34(**kwargs):
    """ImageNet ResNet-34 (21.8M parameters, 3.6e9 multiply-adds); ``resnet34(plain=True)`` is plain-34."""
    return imagenet_resnet(34, **kwargs)


def resnet50(**kwargs):
    """ImageNet ResNet-50 (25.6M parameters, 3.8e9 multiply-adds)."""
    return imagenet_resnet(50, **kwargs)


def resnet101(**kwargs):
    """ImageNet ResNet-101 (44.5M parameters, 7.6e9 multiply-adds)."""
    return imagenet_resnet(101, **kwargs)


def resnet152(**kwargs):
    """ImageNet ResNet-152 (60.2M parameters, 11.3e9 multiply-adds)."""
    return imagenet_resnet(152, **kwargs)
