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
import json
import os
from .checkpoint import load_checkpoint
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


def write_config(out, cfg, data=None):
    """config.json: the options of the run and, under "data", the identity of its data set
    (name, subset, content hash: ``minires.data.identity_of``), never the data's path."""
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({**config_to_dict(cfg), "data": data}, f, indent=2)


# --------------------------------------------------------------------------- metrics files

def append_metrics(out, row):
    """Append one epoch to metrics.csv and metrics.jsonl."""
    csv_path = os.path.join(out, "metrics.csv")
    new = not os.path.exists(csv_path)
    with open(csv_path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
    with open(os.path.join(out, "metrics.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")


def read_metrics(out):
    """The per-epoch rows of a run directory (from metrics.jsonl)."""
    path = os.path.join(out, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def clear_metrics(out):
    """Delete the metrics files (a fresh run in an old directory starts them again)."""
    for name in _METRIC_FILES:
        path = os.path.join(out, name)
        if os.path.exists(path):
            os.remove(path)


def truncate_metrics(out, epochs):
    """Keep the first ``epochs`` rows (a resumed run rewrites what came after its checkpoint)."""
    rows = [r for r in read_metrics(out) if r["epoch"] <= epochs]
    clear_metrics(out)
    for row in rows:
        append_metrics(out, row)


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


# --------------------------------------------------------------------------- trained models

def load_model(path, device="cpu"):
    """(model, config, checkpoint) from a checkpoint written by a training run.

    The model's input normalisation is ``checkpoint["meta"]["pixel_mean"]`` (checkpoints written
    before it was stored lack it: ``minires.train.pixel_mean_of`` recomputes it then).
    """
    ckpt = load_checkpoint(path)
    cfg = config_from_dict(ckpt["meta"]["config"])
    model = build_model(cfg, device)
    model.load_state_dict(ckpt["model"])
    return model, cfg, ckpt
