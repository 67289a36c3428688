"""``minires.models``: the paper's networks.

* ``cifar_resnet(depth, plain=False, shortcut='A', ...)`` (Sec. 4.2; ``resnet20()`` ... ``resnet1202()``)
* ``imagenet_resnet(depth, plain=False, shortcut='B', ...)`` (Table 1; ``resnet18()`` ... ``resnet152()``)
* the blocks: ``BasicBlock``, ``Bottleneck`` (``plain=True`` for their plain twins),
  ``PreActBasicBlock``, ``PreActBottleneck``, and option A's ``ZeroPadShortcut``
* ``extend_with_identity(model, extra_blocks)``: a deeper net computing the same function (residual
  or plain; ``plain_identity_(block)`` makes one plain block the identity)
"""
from .blocks import (BasicBlock, Bottleneck, PreActBasicBlock, PreActBottleneck, ZeroPadShortcut, he_init_,
                     make_shortcut, projection)
from .cifar import cifar_resnet, resnet20, resnet32, resnet44, resnet56, resnet110, resnet1202
from .extend import extend_with_identity, plain_identity_
from .imagenet import imagenet_resnet, resnet18, resnet34, resnet50, resnet101, resnet152
from .resnet import ResNet

__all__ = [
    "ResNet", "cifar_resnet", "imagenet_resnet", "extend_with_identity", "plain_identity_",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "BasicBlock", "Bottleneck", "PreActBasicBlock", "PreActBottleneck", "ZeroPadShortcut",
    "make_shortcut", "projection", "he_init_",
]
