"""``minires.nn``: modules shaped like ``torch.nn``.

``Module``, ``Parameter``, ``Sequential`` (module.py); the layers ``Conv2d``, ``Linear``,
``BatchNorm2d``, ``ReLU``, ``MaxPool2d``, ``AvgPool2d``, ``AdaptiveAvgPool2d``, ``Flatten``,
``Identity`` (layers.py); ``SyncBatchNorm`` (sync_batchnorm.py); weight initialisation in ``minires.nn.init``.
"""
from . import init
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BatchNorm2d, Conv2d, Flatten, Identity, Linear, MaxPool2d,
                     ReLU)
from .module import IncompatibleKeys, Module, Parameter, Sequential
from .sync_batchnorm import SyncBatchNorm

__all__ = [
    "Module", "Parameter", "Sequential", "IncompatibleKeys", "init",
    "Conv2d", "Linear", "BatchNorm2d", "ReLU", "Identity", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten",
    "SyncBatchNorm",
]
