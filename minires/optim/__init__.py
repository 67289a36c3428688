"""``minires.optim``: optimisers and learning-rate schedules, as ``torch.optim``.

    sgd.py            SGD (PyTorch's update rule, param groups, state_dict)
    lr_scheduler.py   MultiStepLR, WarmupUntil, the paper's schedule (stepped per iteration)

Saving their state to disk is ``minires.checkpoint``'s job (``flatten_state`` is re-exported
here for code written before the split).
"""
from ..checkpoint import flatten_state, unflatten_state
from .lr_scheduler import (
    PAPER_LR,
    PAPER_MILESTONES,
    PAPER_TOTAL_ITERATIONS,
    PAPER_WARMUP_ERROR,
    PAPER_WARMUP_LR,
    LRSchedule,
    MultiStepLR,
    WarmupUntil,
    paper_milestones,
    paper_schedule,
)
from .sgd import SGD

__all__ = [
    "SGD", "LRSchedule", "MultiStepLR", "WarmupUntil", "paper_schedule", "paper_milestones",
    "flatten_state", "unflatten_state", "PAPER_LR", "PAPER_MILESTONES", "PAPER_TOTAL_ITERATIONS",
    "PAPER_WARMUP_LR", "PAPER_WARMUP_ERROR",
]
