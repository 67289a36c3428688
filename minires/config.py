"""``TrainConfig``: everything that defines a training run, with the paper's recipe as defaults.

He et al. (2015), Sec. 4.2: ResNet-20 with option A shortcuts, SGD with momentum 0.9 and weight
decay 1e-4, batch 128, lr 0.1 divided by 10 at 32k and 48k iterations, 64k iterations;
ResNet-110 warms up at lr 0.01 until the training error is below 80 %.

Each default lives here and only here: the command line (``minires.train.cli``) generates its options
from these fields and their ``help``, and the experiments reuse them. A config checks its values
once, when it is made (``validate``), so a bad value is reported before any data is loaded.
"""
from dataclasses import asdict, dataclass, field, fields

from ._checks import SHORTCUT_OPTIONS, check_int, check_real
from .data.dataset import check_subset
from .models import cifar_resnet

DATASETS = ("cifar10", "synthetic")
DEVICES = ("cpu", "gpu")


def option(default, help, **cli):
    """A config field with its command-line help (and argparse extras: choices, nargs, ...)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """Everything that defines a run. The defaults are the paper's CIFAR-10 recipe."""

    depth: int = option(20, "6n+2: 20, 32, 44, 56, 110, 1202")
    plain: bool = option(False, "the plain twin, without shortcuts")
    shortcut: str = option("A", "the paper's shortcut option", choices=SHORTCUT_OPTIONS)
    width: int = option(16, "filters of the first stage (the paper's: 16)")
    epochs: int = option(None, "budget in epochs (default: the paper's 64000 iterations)", group="budget")
    iterations: int = option(None, "budget in iterations", group="budget")
    milestones: list = option(None, "lr divided by 10 at these epochs/iterations (same unit as the budget; "
                                    "default: at 1/2 and 3/4 of the run)", type=float, nargs="+")
    batch_size: int = option(128, "mini-batch size")
    lr: float = option(0.1, "initial learning rate")
    momentum: float = option(0.9, "SGD momentum")
    weight_decay: float = option(1e-4, "L2 weight decay")
    warmup: bool = option(None, "lr 0.01 until training error < 80% (auto: on for depth >= 110, as the paper)",
                          values={"auto": None, "on": True, "off": False})
    device: str = option("cpu", "where to train", choices=DEVICES)
    dataset: str = option("cifar10", "synthetic: 2000 generated images, no files needed", choices=DATASETS)
    data_dir: str = option(None, "CIFAR-10 archive, or a folder holding one; only read, never created "
                                 "(default: $MINIRES_DATA_DIR, else the user cache ~/.cache/minires, "
                                 "downloaded into when missing)")
    subset: list = option(None, "use only the first TRAIN training and TEST test images of CIFAR-10, in the "
                                "official order (the learner's subset: --subset 4000 1000)", type=int, nargs=2,
                          metavar=("TRAIN", "TEST"))
    val_split: float = option(0, "hold out this many training images (or this fraction) for validation; "
                                 "the paper's is 5000 (0: none)")
    train_limit: int = option(None, "use only the first N training images")
    out: str = option(None, "run directory (default runs/resnet<depth> or runs/plain<depth>)")
    seed: int = option(0, "seeds the weights, shuffling and augmentation")
    eval_batch_size: int = option(500, "batch size of the evaluations")
    progress: bool = option(True, "show a progress bar", off_help="no progress bar")
    cuda_graph: bool = option(False, "GPU only: capture each training step once as a CUDA graph and replay it")
    distributed: bool = option(False, "data-parallel over MPI ranks: mpiexec -n N python -m minires.train "
                                      "--distributed ... (needs mpi4py: pip install 'minires[mpi]'); same global "
                                      "batch and recipe")
    sync_bn: bool = option(False, "with --distributed: batch-norm statistics over the whole global batch "
                                  "(default: each rank's slice); a resumed run keeps its own setting")

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Check every value (types and ranges); raises TypeError/ValueError naming the option."""
        w = "TrainConfig"
        if (check_int(w, "depth", self.depth, minimum=8) - 2) % 6:
            raise ValueError(f"{w}: depth must be 6n+2 (20, 32, 44, 56, 110, 1202), got {self.depth}")
        check_int(w, "width", self.width, minimum=1)
        check_int(w, "batch_size", self.batch_size, minimum=1)
        check_int(w, "eval_batch_size", self.eval_batch_size, minimum=1)
        check_int(w, "seed", self.seed, minimum=0)
        for name in ("epochs", "iterations", "train_limit"):
            if getattr(self, name) is not None:
                check_int(w, name, getattr(self, name), minimum=1)
        if self.epochs is not None and self.iterations is not None:
            raise ValueError(f"{w}: give epochs or iterations, not both")
        if self.milestones is not None:
            for m in self.milestones:
                check_real(w, "each milestone", m, minimum=0, strictly=True)
        if self.subset is not None:
            self.subset = list(check_subset(self.subset, w))
            if self.dataset != "cifar10":
                raise ValueError(f"{w}: subset selects CIFAR-10 images; dataset {self.dataset!r} has none")
        check_real(w, "lr", self.lr, minimum=0)
        check_real(w, "momentum", self.momentum, minimum=0)
        check_real(w, "weight_decay", self.weight_decay, minimum=0)
        val = check_real(w, "val_split", self.val_split, minimum=0)
        if val >= 1 and val != int(val):
            raise ValueError(f"{w}: val_split is a number of images (>= 1) or a fraction (< 1), got {val}")
        for name, allowed in (("shortcut", SHORTCUT_OPTIONS), ("device", DEVICES + ("cuda",)),
                              ("dataset", DATASETS), ("warmup", (None, True, False)),
                              ("plain", (True, False)), ("progress", (True, False)),
                              ("cuda_graph", (True, False)), ("distributed", (True, False)),
                              ("sync_bn", (True, False))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{w}: {name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.cuda_graph and self.device == "cpu":
            raise ValueError(f"{w}: cuda_graph needs device 'gpu' (CUDA graphs replay GPU kernels)")
        if self.cuda_graph and self.distributed:
            raise ValueError(f"{w}: cuda_graph and distributed do not go together yet (the gradient allreduce "
                             "runs between backward and the update, outside the captured step)")
        return self


def config_to_dict(cfg):
    """The options of a run as saved (config.json, checkpoints): all but the data's location.

    A run records *what* it trained on (its data identity, saved beside this dict), never where
    the files were: the same run may resume, or be evaluated, with the data somewhere else.
    """
    d = asdict(cfg)
    del d["data_dir"]
    return d


def config_from_dict(d):
    """A ``TrainConfig`` from a saved dict (config.json, a checkpoint); unknown keys are ignored."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in names})


def build_model(cfg, device="cpu", seed=None):
    """The CIFAR net that ``cfg`` describes, on ``device``."""
    return cifar_resnet(cfg.depth, plain=cfg.plain, shortcut=cfg.shortcut, width=cfg.width, seed=seed).to(device)
