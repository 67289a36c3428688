"""``SyncBatchNorm``: batch norm whose training statistics span the ranks of a data-parallel job.

As ``torch.nn.SyncBatchNorm``. In data-parallel training each rank sees only its slice of the
global batch; a plain ``BatchNorm2d`` normalises with the statistics of that slice (what
PyTorch's DDP does by default), a ``SyncBatchNorm`` with those of the whole batch, so N ranks
compute exactly what one process computes on the whole batch. The math, and the one op that
does it, are ``minires.ops.norm.BatchNorm`` with a ``process_group``: every per-channel sum is
allreduced, two small messages in forward and one in backward per layer.
"""
from .layers import BatchNorm2d
from .module import Module


class SyncBatchNorm(BatchNorm2d):
    """``BatchNorm2d`` with training statistics summed over ``process_group``'s ranks.

    ``process_group``: the ranks that share the statistics, e.g. what
    ``minires.distributed.setup`` returns (any object with ``all_reduce_sum(array)``); None:
    this process alone, which is then the same as ``BatchNorm2d``. Eval mode never communicates
    (``BatchNorm2d.forward`` passes the group in training mode only): with running statistics it
    uses them, without (``track_running_stats=False``) each rank normalises its own batch. Parameters, buffers and ``state_dict`` keys are
    ``BatchNorm2d``'s, so checkpoints move freely between the two.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.process_group = process_group

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """``module`` with every ``BatchNorm2d`` replaced by a ``SyncBatchNorm`` on ``process_group``.

        As torch's: the new layers take over the old ones' parameters and buffers (the very
        arrays, so an optimiser built before the conversion still updates them) and their
        training mode. Returns the converted module (a new one when ``module`` itself is a
        ``BatchNorm2d``), converting children in place.
        """
        if not isinstance(module, Module):
            raise TypeError(f"convert_sync_batchnorm: module must be a minires.nn.Module, got {type(module).__name__}")
        if isinstance(module, BatchNorm2d) and not isinstance(module, cls):
            sync = cls(module.num_features, module.eps, module.momentum, module.affine,
                       module.track_running_stats, process_group)
            for name, p in module._parameters.items():
                sync.register_parameter(name, p)
            for name, b in module._buffers.items():
                sync.register_buffer(name, b)
            sync.train(module.training)
            return sync
        for name, child in list(module.named_children()):
            converted = cls.convert_sync_batchnorm(child, process_group)
            if converted is not child:
                module.add_module(name, converted)
        return module

    def extra_repr(self):
        group = "" if self.process_group is None else f", process_group={self.process_group!r}"
        return super().extra_repr() + group


__all__ = ["SyncBatchNorm"]
