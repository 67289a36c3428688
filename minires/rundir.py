"""A run directory: what a training run writes to ``--out``, and how to read it back.

    config.json         the options of the run
    metrics.csv         one row per epoch (also metrics.jsonl, one JSON object per line)
    last.npz            checkpoint after every epoch (and on Ctrl-C): model, optimiser,
                        schedule, RNG state, pixel mean, position in the run; written atomically
    best.npz            the checkpoint with the lowest validation (else test) error
    curves.png          training (dashed) and test (bold) error against iterations

Names follow the paper: ``model_name`` gives 'ResNet-56' or 'plain-56', ``run_name`` the
directory name 'resnet56' or 'plain56'.
"""
import csv
import fcntl
import json
import os
import socket
import sys
import time
from .checkpoint import load_checkpoint, write_atomically
from .config import build_model, config_from_dict, config_to_dict

METRIC_FIELDS = ("epoch", "iteration", "lr", "train_loss", "train_err", "val_loss", "val_err",
                 "test_loss", "test_err", "epoch_time_s", "img_per_s")
_METRIC_FILES = ("metrics.csv", "metrics.jsonl")


def model_name(plain, depth):
    """'plain-56' or 'ResNet-56', as the paper names its nets."""
    return f"{'plain' if plain else 'ResNet'}-{depth}"


def run_name(plain, depth):
    """'plain56' or 'resnet56': the run directory's name (default ``--out`` is runs/<run_name>)."""
    return f"{'plain' if plain else 'resnet'}{depth}"


def default_out(cfg):
    """Where a run of ``cfg`` writes when ``cfg.out`` is not given: runs/<run_name>."""
    return os.path.join("runs", run_name(cfg.plain, cfg.depth))


def write_config(out, cfg, data=None, conv_algorithms=None):
    """config.json: the options of the run; under "data", the identity of its data set (name,
    subset, content hash: ``minires.data.identity_of``), never the data's path; under
    "conv_algorithms", the conv kernel of each shape and direction (``minires.autotune``)."""
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({**config_to_dict(cfg), "data": data, "conv_algorithms": conv_algorithms or {}}, f, indent=2)


# --------------------------------------------------------------------------- metrics files

def write_metrics(out, rows):
    """metrics.csv and metrics.jsonl from ``rows``, each written whole and then renamed into place.

    The checkpoint carries the rows it has seen, and the files are rebuilt from it after every
    epoch and on resume: a kill at any instant leaves the old files or the new ones, never a
    mixture, and never an epoch missing from the files that the checkpoint has.
    """
    def write(name, fill):
        with write_atomically(os.path.join(out, name)) as f:
            fill(f)

    def fill_csv(f):
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        writer.writeheader()
        writer.writerows(rows)

    write("metrics.csv", fill_csv)
    write("metrics.jsonl", lambda f: f.writelines(json.dumps(row) + "\n" for row in rows))


def read_metrics(out, warn=None):
    """The per-epoch rows of a run directory (from metrics.jsonl).

    A partial last row (what a full disk or a kill in an older version's append could leave) is
    dropped, and ``warn`` (default: a line on stderr) says so, naming the file; a damaged row
    before the last is an error naming the file and the line.
    """
    path = os.path.join(out, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [line for line in f.read().split("\n") if line.strip()]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            rows.append(json.loads(line))
        except ValueError as exc:
            if number < len(lines):
                raise ValueError(f"read_metrics: {path}, line {number}, is not a metrics row ({exc})") from None
            (warn or (lambda text: print(text, file=sys.stderr)))(
                f"read_metrics: dropping the incomplete last row of {path} (line {number})")
    return rows


def clear_metrics(out):
    """Delete the metrics files (a fresh run in an old directory starts them again)."""
    for name in _METRIC_FILES:
        path = os.path.join(out, name)
        if os.path.exists(path):
            os.remove(path)


def format_row(row, total):
    """One epoch's metrics as the line the training log prints."""
    val = f"  val err {100 * row['val_err']:.2f}%" if row["val_err"] is not None else ""
    return (f"epoch {row['epoch']:3d}  iter {row['iteration']:6d}/{total}  lr {row['lr']:.4g}  "
            f"train loss {row['train_loss']:.4f} err {100 * row['train_err']:.2f}%{val}  "
            f"test loss {row['test_loss']:.4f} err {100 * row['test_err']:.2f}%  "
            f"{row['epoch_time_s']:.1f}s  {row['img_per_s']:.0f} img/s")


def plot_curves(rows, path, title):
    """Training error (dashed) and test error (bold) against iterations, as in the paper's figures.

    Needs matplotlib (the ``train`` extra): ``ImportError`` without it.
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend switch, safe in notebooks

    its = [r["iteration"] for r in rows]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(its, [100 * r["train_err"] for r in rows], "--", color="C0", label="training error")
    ax.plot(its, [100 * r["test_err"] for r in rows], "-", color="C0", linewidth=2.5, label="test error")
    if any(r.get("val_err") is not None for r in rows):
        ax.plot(its, [100 * r["val_err"] for r in rows], ":", color="C1", label="validation error")
    ax.set_xlabel("iterations")
    ax.set_ylabel("error (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return fig


# --------------------------------------------------------------------------- one writer

class RunDirectoryBusy(RuntimeError):
    """Another process is writing to this run directory."""


class RunLock:
    """One writer per run directory: an exclusive ``flock`` on ``<out>/.lock``, held while the run lives.

    The operating system releases the lock when the process ends, however it ends, so a killed
    run leaves no stale lock. The owner's pid, host and start time are written into the lock
    file for the message a second run gets::

        with RunLock(out):
            ...  # write checkpoints and metrics
    """

    def __init__(self, out):
        self.path, self.fd = os.path.join(out, ".lock"), None

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunDirectoryBusy(
                f"{os.path.dirname(self.path)} is in use by another run ({owner}); wait for it to end, or "
                "choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # releases the lock; the file stays (removing it would race a new writer)
        self.fd = None
        return False


# --------------------------------------------------------------------------- trained models

def load_model(path, device="cpu", fallback=None):
    """(model, config, checkpoint) from a checkpoint written by a training run.

    The model's input normalisation is ``checkpoint["meta"]["pixel_mean"]`` (checkpoints written
    before it was stored lack it: ``minires.train.pixel_mean_of`` recomputes it then). A bare
    model checkpoint (``save_checkpoint(path, model)``: no run config) needs a ``fallback``
    config for what a state dict cannot tell (plain or residual, the shortcut option, the data);
    its depth and width are read from the state dict.
    """
    ckpt = load_checkpoint(path)
    if "config" in ckpt["meta"]:
        cfg = config_from_dict(ckpt["meta"]["config"])
    elif fallback is not None:
        cfg = config_for_state_dict(ckpt["model"], fallback, path)
    else:
        raise ValueError(f"load_model: {path} is a bare model checkpoint (no run config): pass a fallback "
                         "config (on the command line: --depth/--plain/--shortcut as it was trained)")
    model = build_model(cfg, device)
    model.load_state_dict(ckpt["model"])
    return model, cfg, ckpt


def config_for_state_dict(state, base, path="the checkpoint"):
    """``base`` (a TrainConfig) with the depth and width of a CIFAR ResNet's state dict."""
    blocks = {k.split(".")[1] for k in state if k.startswith("layer1.")}
    if "conv1.weight" not in state or not blocks:
        raise ValueError(f"load_model: {path} does not hold a CIFAR ResNet's state dict "
                         f"(keys: {sorted(state)[:4]}...)")
    cfg = config_from_dict({**config_to_dict(base), "depth": 6 * len(blocks) + 2,
                            "width": int(state["conv1.weight"].shape[0])})
    cfg.data_dir = base.data_dir
    return cfg
