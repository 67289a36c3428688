"""``python -m minires.train``: the command line, a thin layer over ``minires.train.trainer``.

Every option of a run is generated from a field of ``TrainConfig`` (``--batch-size`` from
``batch_size``, with its default and help), so a default exists in one place only;
``add_config_options`` lets other commands (the experiments) reuse any of them. Only
``--resume`` and ``--eval-only`` are the command line's own.
"""
import argparse
import os
import sys
from dataclasses import MISSING, fields

from .. import data as datasets
from ..threads import set_num_threads
from ..checkpoint import load_checkpoint
from ..config import TrainConfig, config_from_dict
from ..rundir import default_out, load_model, model_name
from .trainer import NonFiniteLoss, evaluate, load_data, pixel_mean_of, train

DESCRIPTION = ("Train a CIFAR-10 ResNet (He et al. 2015) with the paper's recipe. Defaults are the "
               "paper's: ResNet-20, option A shortcuts, SGD momentum 0.9, weight decay 1e-4, batch 128, "
               "lr 0.1 divided by 10 at 32k and 48k iterations, 64k iterations.")


def _flag(name):
    return "--" + name.replace("_", "-")


def add_config_options(parser, names=None):
    """Add an option for each ``TrainConfig`` field (or for those in ``names``), defaults included.

    A bool field that defaults to False becomes a switch (``--plain``), one that defaults to True
    a ``--no-`` switch (``--no-progress``, its help from ``off_help``); a field with ``values`` maps words to values
    (``--warmup auto|on|off``); fields sharing a ``group`` exclude each other.
    """
    groups = {}
    for f in fields(TrainConfig):
        if names is not None and f.name not in names:
            continue
        meta, default = f.metadata, f.default
        assert default is not MISSING, f.name
        target = parser
        if "group" in meta:
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_mutually_exclusive_group()
            target = groups[meta["group"]]
        help_text = meta["help"].replace("%", "%%")
        if f.type is bool and "values" not in meta:
            if default:
                target.add_argument(_flag("no_" + f.name), dest=f.name, action="store_false",
                                    help=meta.get("off_help", f"turn off: {help_text}"))
            else:
                target.add_argument(_flag(f.name), action="store_true", help=help_text)
            continue
        if "values" in meta:
            words = {value: word for word, value in meta["values"].items()}
            target.add_argument(_flag(f.name), choices=list(meta["values"]), default=words[default],
                                help=f"{help_text} (default {words[default]})")
            continue
        kwargs = {"type": meta.get("type", f.type if f.type in (int, float, str) else str)}
        for key in ("choices", "nargs"):
            if key in meta:
                kwargs[key] = meta[key]
        if default is not None:
            help_text += f" (default {default})"
        target.add_argument(_flag(f.name), default=default, help=help_text, **kwargs)
    return parser


def config_from_args(args):
    """The ``TrainConfig`` that parsed arguments describe (words such as ``--warmup on`` mapped)."""
    values = {}
    for f in fields(TrainConfig):
        value = getattr(args, f.name)
        values[f.name] = f.metadata["values"][value] if "values" in f.metadata else value
    return TrainConfig(**values)


def build_parser():
    p = argparse.ArgumentParser(prog="python -m minires.train", description=DESCRIPTION)
    add_config_options(p)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--eval-only", metavar="CHECKPOINT", default=None, help="evaluate a checkpoint and exit")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (minires.set_num_threads; default: OMP_NUM_THREADS, else every CPU)")
    return p


def eval_only(path, args):
    """Test loss and error of a checkpointed model, with the pixel mean it was trained with."""
    model, cfg, ckpt = load_model(path, args.device)
    if args.data_dir is not None:
        cfg.data_dir = args.data_dir
    mean = pixel_mean_of(ckpt, cfg)
    _, _, _, _, x_test, y_test = load_data(cfg)
    loss, err = evaluate(model, x_test, y_test, mean, args.device)
    print(f"{model_name(cfg.plain, cfg.depth)} from {path} (epoch {ckpt['meta']['epoch']}, iteration {ckpt['meta']['iteration']}): "
          f"test loss {loss:.4f}, test error {100 * err:.2f}% on {len(x_test)} images")
    return err


def resumed_config(cfg):
    """The saved config of the run in ``cfg.out``, with this call's budget, device and progress bar."""
    out = cfg.out or default_out(cfg)
    resumed = config_from_dict(load_checkpoint(os.path.join(out, "last.npz"))["meta"]["config"])
    # Continue the same run: only the budget (and the lr drops, if given again) may change.
    for name in ("epochs", "iterations", "milestones"):
        if getattr(cfg, name) is not None:
            setattr(resumed, name, getattr(cfg, name))
    if cfg.epochs is not None:
        resumed.iterations = None
    if cfg.iterations is not None:
        resumed.epochs = None
    # How to run it (where, with what progress bar, replayed as a CUDA graph or not) is this call's choice.
    resumed.out, resumed.progress, resumed.device, resumed.cuda_graph = out, cfg.progress, cfg.device, cfg.cuda_graph
    resumed.distributed = cfg.distributed  # the run may resume on any number of ranks
    return resumed.validate()


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        if args.threads is not None:
            set_num_threads(args.threads)
    except (TypeError, ValueError) as e:  # a bad value: argparse's usage message and exit code 2
        parser.error(str(e))
    try:
        if args.eval_only:
            eval_only(args.eval_only, args)
            return 0
        if args.resume:
            cfg = resumed_config(cfg)
        train(cfg, resume=args.resume)
    except KeyboardInterrupt:
        return 130
    except NonFiniteLoss:
        return 3
    except (FileNotFoundError, ValueError, RuntimeError, datasets.DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0

