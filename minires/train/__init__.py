"""Training a CIFAR-10 ResNet with the paper's recipe, and ``python -m minires.train``.

* ``trainer.py``: ``Trainer`` (the loop, epoch by epoch, with exact resume) and ``train(cfg)``,
  what the command line and the experiments call; evaluation, the data, the lr schedule.
* ``cli.py``: the command line, options generated from ``minires.config.TrainConfig``.
* ``__main__.py``: ``python -m minires.train`` runs ``cli.main``.

One step of the loop is ``minires.step.train_step``; what a run writes, and reading it back
(``read_metrics``, ``load_model``), is ``minires.rundir``'s.
"""
from ..config import TrainConfig, build_model, config_from_dict
from ..rundir import load_model, read_metrics
from ..step import train_step
from .cli import main
from .trainer import Interrupted, NonFiniteLoss, Trainer, dataset_of, evaluate, load_data, make_schedule, pixel_mean_of, plan, train

__all__ = ["TrainConfig", "Trainer", "train", "train_step", "evaluate", "load_data", "plan", "make_schedule",
           "pixel_mean_of", "NonFiniteLoss", "Interrupted", "dataset_of", "build_model", "config_from_dict", "load_model", "read_metrics", "main"]
