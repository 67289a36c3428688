"""``python -m minires.train``: the command line, a thin layer over ``minires.train.trainer``.

Every option of a run is generated from a field of ``TrainConfig`` (``--batch-size`` from
``batch_size``, with its default and help), so a default exists in one place only;
``add_config_options`` lets other commands (the experiments) reuse any of them. Only
``--resume`` and ``--eval-only`` are the command line's own.
"""
import argparse
import errno
import os
import pickle
import sys
from dataclasses import MISSING, fields

from .. import data as datasets
from ..threads import set_num_threads
from ..checkpoint import load_checkpoint
from ..config import TrainConfig, config_from_dict
from ..rundir import default_out, load_model, model_name
from .trainer import Interrupted, NonFiniteLoss, evaluate, load_data, pixel_mean_of, train

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
        for key in ("choices", "nargs", "metavar"):
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


def eval_only(path, args, cfg):
    """Test loss and error of a checkpointed model, with the pixel mean it was trained with.

    A bare model checkpoint (``save_checkpoint(path, model)``, no run config) is evaluated too:
    its depth and width are read from its state dict, the rest (``--plain``, ``--shortcut``,
    the data) taken from the command line.
    """
    model, cfg, ckpt = load_model(path, args.device, fallback=cfg)
    if args.data_dir is not None:
        cfg.data_dir = args.data_dir
    mean = pixel_mean_of(ckpt, cfg)
    _, _, _, _, x_test, y_test = load_data(cfg)
    loss, err = evaluate(model, x_test, y_test, mean, args.device)
    meta = ckpt["meta"]
    where = f"epoch {meta['epoch']}, iteration {meta['iteration']}" if "epoch" in meta else "a bare model checkpoint"
    print(f"{model_name(cfg.plain, cfg.depth)} from {path} ({where}): "
          f"test loss {loss:.4f}, test error {100 * err:.2f}% on {len(x_test)} images")
    return err


#: What a resumed run may change: its budget, and where and how it runs. Every other option given
#: with --resume must equal the saved run's (the data's location may change; its identity binds).
RESUME_MAY_CHANGE = ("epochs", "iterations", "milestones", "out", "progress", "device", "cuda_graph",
                     "distributed", "data_dir", "eval_batch_size")


def given_options(parser, argv):
    """The destinations of the options actually typed in ``argv`` (not their defaults)."""
    quiet = argparse.ArgumentParser(add_help=False)
    for action in parser._actions:  # the same options, each defaulting to "not given"
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            kwargs = {"dest": action.dest, "default": argparse.SUPPRESS}
            if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
                kwargs["action"] = "store_true"
            else:
                kwargs["nargs"] = action.nargs
            quiet.add_argument(*action.option_strings, **kwargs)
    return set(vars(quiet.parse_known_args(argv)[0]))


def check_resume_options(cfg, saved, given):
    """An option given with --resume that differs from the saved run's is an error naming both values."""
    for name in sorted(given - set(RESUME_MAY_CHANGE)):
        if hasattr(saved, name) and getattr(cfg, name) != getattr(saved, name):
            raise ValueError(
                f"--resume: {_flag(name)} is {getattr(cfg, name)!r} here but {getattr(saved, name)!r} in the saved run "
                f"({cfg.out or default_out(cfg)}); a resumed run keeps its options: only the budget (--epochs, "
                "--iterations, --milestones) and where it runs (--out, --device, --data-dir, ...) may change")


def resumed_config(cfg):
    """The saved config of the run in ``cfg.out``, with this call's budget, device and progress bar."""
    out = cfg.out or default_out(cfg)
    meta = load_checkpoint(os.path.join(out, "last.npz"))["meta"]
    if "config" not in meta:
        raise ValueError(f"--resume: {os.path.join(out, 'last.npz')} is a bare model checkpoint, not a training "
                         "run's: there is no run to continue (evaluate it with --eval-only)")
    resumed = config_from_dict(meta["config"])
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
    resumed.data_dir = cfg.data_dir  # the data may have moved; its identity is checked on restore
    return resumed.validate()


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        if args.threads is not None:
            cpus = os.cpu_count() or 1
            if args.threads > cpus:
                raise ValueError(f"--threads {args.threads} is more than this machine's {cpus} CPUs")
            set_num_threads(args.threads)
    except (TypeError, ValueError) as e:  # a bad value: argparse's usage message and exit code 2
        parser.error(str(e))
    try:
        return _run(args, cfg, given_options(parser, argv))
    except Interrupted as e:
        return 128 + e.signum  # 130 for Ctrl-C, 143 for SIGTERM, as a shell reports them
    except KeyboardInterrupt:
        return 130
    except NonFiniteLoss:
        return 3  # the run has said what happened and which checkpoint is kept
    except ERRORS_FOR_THE_USER as e:  # the one error boundary: a line naming the path and what to do
        print(f"error: {_message(e)}", file=sys.stderr)
        return 2


#: Errors a user can act on: the file system, checkpoints, data, a busy run directory.
ERRORS_FOR_THE_USER = (OSError, ValueError, RuntimeError, datasets.DownloadError, pickle.UnpicklingError)


def _message(e):
    """One line for an error: an operating-system error names its path and what to do."""
    if isinstance(e, OSError) and e.filename is not None and not isinstance(e, datasets.DataNotFoundError):
        hints = {errno.ENOSPC: "free some space, or choose another --out",
                 errno.EROFS: "choose an --out on a writable file system",
                 errno.EACCES: "choose an --out you may write to",
                 errno.EEXIST: "--out must be a directory (or a new name), not a file",
                 errno.ENOTDIR: "--out must be a directory (or a new name), not a file"}
        hint = hints.get(e.errno, "check the path")
        return f"{e.strerror}: {e.filename}: {hint}"
    return str(e)


def _run(args, cfg, given):
    if args.eval_only:
        eval_only(args.eval_only, args, cfg)
        return 0
    if args.resume:
        resumed = resumed_config(cfg)
        check_resume_options(cfg, resumed, given)
        cfg = resumed
    train(cfg, resume=args.resume)
    return 0

