"""``python -m minires.train --depth 20``: train a CIFAR-10 ResNet with the paper's recipe.

The recipe (He et al. 2015, Sec. 4.2): SGD with momentum 0.9 and weight decay 1e-4, batch 128,
lr 0.1 divided by 10 at 32k and 48k iterations, stop at 64k; per-pixel mean subtracted; 4-pixel
padding, random 32x32 crop and horizontal flip; ResNet-110 warms up at lr 0.01 until the
training error is below 80 %. Shorter runs (``--epochs``/``--iterations``) keep the schedule's
shape: the lr drops at 1/2 and 3/4 of the run unless ``--milestones`` says otherwise.

What a run writes to ``--out``::

    config.json         the options of the run
    metrics.csv         one row per epoch (also metrics.jsonl, one JSON object per line)
    last.npz            checkpoint after every epoch (and on Ctrl-C): model, optimiser,
                        schedule, RNG state, position in the run; written atomically
    best.npz            the checkpoint with the lowest validation (else test) error
    curves.png          training (dashed) and test (bold) error against iterations

``--resume`` continues from last.npz exactly as if the run had never stopped: same batches,
same augmentation, same result, bit for bit.
"""
import argparse
import csv
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from . import data as datasets
from . import distributed
from . import functional as F
from .backend import check_device, to_numpy
from .checkpoint import load_checkpoint, save_checkpoint
from .engine import Tensor, no_grad
from .models import cifar_resnet
from .optim import SGD, MultiStepLR, WarmupUntil, PAPER_WARMUP_ERROR, PAPER_WARMUP_LR

METRIC_FIELDS = ("epoch", "iteration", "lr", "train_loss", "train_err", "val_loss", "val_err",
                 "test_loss", "test_err", "epoch_time_s", "img_per_s")


@dataclass
class TrainConfig:
    """Everything that defines a run. The defaults are the paper's CIFAR-10 recipe."""

    depth: int = 20
    plain: bool = False
    shortcut: str = "A"
    width: int = 16               # filters of the first stage (16 in the paper)
    epochs: int = None            # budget in epochs, or ...
    iterations: int = None        # ... in iterations (default: the paper's 64,000)
    milestones: list = None       # lr drops, in the budget's unit (default: 1/2 and 3/4 of it)
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup: bool = None           # lr 0.01 until training error < 80 % (default: on for depth >= 110)
    device: str = "cpu"
    dataset: str = "cifar10"
    data_dir: str = None
    val_split: float = 0          # images (>= 1) or fraction (< 1) held out from training
    train_limit: int = None       # use only the first N training images (quick experiments)
    out: str = None
    seed: int = 0
    eval_batch_size: int = 500
    progress: bool = True
    distributed: bool = False     # data-parallel over the ranks of `mpiexec -n N` (minires.distributed)
    sync_bn: bool = False         # batch-norm statistics over the whole global batch (nn.SyncBatchNorm)


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite."""


# --------------------------------------------------------------------------- the data

def load_data(cfg):
    """(x_train, y_train, x_val, y_val, x_test, y_test) as uint8 images and int64 labels."""
    if cfg.dataset == "synthetic":
        x_train, y_train, x_test, y_test = datasets.synthetic_cifar(2000, 500, seed=cfg.seed)
    elif cfg.dataset == "cifar10":
        path = datasets.find_or_download_cifar10(cfg.data_dir)
        x_train, y_train, x_test, y_test = datasets.load_cifar10(path)
    else:
        raise ValueError(f"--dataset must be 'cifar10' or 'synthetic', got {cfg.dataset!r}")
    if cfg.train_limit:
        x_train, y_train = x_train[:cfg.train_limit], y_train[:cfg.train_limit]
    x_val = y_val = None
    if cfg.val_split:
        size = int(cfg.val_split) if cfg.val_split >= 1 else cfg.val_split
        (x_train, y_train), (x_val, y_val) = datasets.train_val_split(x_train, y_train, size, rng=cfg.seed)
    return x_train, y_train, x_val, y_val, x_test, y_test


# --------------------------------------------------------------------------- the schedule

def plan(cfg, batches_per_epoch):
    """(total iterations, milestones in iterations) from the budget given in epochs or iterations."""
    if cfg.epochs is not None and cfg.iterations is not None:
        raise ValueError("give --epochs or --iterations, not both")
    if cfg.epochs is not None:
        total, unit = cfg.epochs * batches_per_epoch, batches_per_epoch
    else:
        total, unit = (cfg.iterations if cfg.iterations is not None else 64000), 1
    if total < 1:
        raise ValueError(f"the run must have at least one iteration, got {total}")
    if cfg.milestones is None:
        milestones = [total // 2, total * 3 // 4]  # where the paper's 32k and 48k sit in 64k
        milestones = sorted({m for m in milestones if 0 < m < total})
    else:
        milestones = [int(m * unit) for m in cfg.milestones]
    return total, milestones


def make_schedule(cfg, optimizer, total, milestones):
    schedule = MultiStepLR(optimizer, cfg.lr, milestones, gamma=0.1)
    warmup = cfg.warmup if cfg.warmup is not None else cfg.depth >= 110
    if warmup:
        schedule = WarmupUntil(schedule, error_threshold=PAPER_WARMUP_ERROR, warmup_lr=PAPER_WARMUP_LR)
    return schedule


# --------------------------------------------------------------------------- evaluation

def evaluate(model, x, y, mean, device, batch_size=500):
    """(mean loss, error rate) of ``model`` in eval mode on uint8 images ``x``."""
    was_training = model.training
    model.eval()
    loss_sum = err_sum = 0.0
    with no_grad():
        for xb, yb in datasets.iterate_batches(x, y, batch_size, mean=mean, device=device):
            logits = model(Tensor(xb))
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum").item())
            err_sum += int((logits.data.argmax(axis=1) != yb).sum())
    model.train(was_training)
    return loss_sum / len(x), err_sum / len(x)


# --------------------------------------------------------------------------- the run

class Trainer:
    """One training run: model, optimiser, schedule, data, and where it stands."""

    def __init__(self, cfg, log=print):
        self.cfg, self.log = cfg, log
        self.dist = distributed.setup(cfg)  # distributed: this process alone, or this MPI rank
        cfg.device = check_device(cfg.device)
        self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test = load_data(cfg)
        self.mean = datasets.per_pixel_mean(self.x_train)
        model_seed, data_seed = np.random.SeedSequence(cfg.seed).spawn(2)
        self.model = build_model(cfg, cfg.device, seed=np.random.default_rng(model_seed))
        if cfg.sync_bn:  # distributed
            self.model = self.dist.convert_sync_batchnorm(self.model)
        self.dist.broadcast_parameters(self.model)  # distributed: every rank starts from rank 0's weights
        self.loader = datasets.Loader(self.x_train, self.y_train, cfg.batch_size, shuffle=True, augment=True,
                                      mean=self.mean, device=cfg.device, rng=np.random.default_rng(data_seed))
        self.loader = self.dist.shard(self.loader)  # distributed: this rank's slice of every global batch
        self.optimizer = SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                             weight_decay=cfg.weight_decay)
        self.total, self.milestones = plan(cfg, len(self.loader))
        self.schedule = make_schedule(cfg, self.optimizer, self.total, self.milestones)
        # Where the run stands; everything here goes into the checkpoint.
        self.epoch = 0              # epochs completed
        self.iteration = 0          # iterations completed
        self.batch_in_epoch = 0     # batches of the current epoch already done (non-zero after Ctrl-C)
        self.epoch_rng = self.loader.state_dict()   # the data RNG at the start of the current epoch
        self.sums = [0.0, 0.0, 0]   # running loss sum, error count, images of the current epoch
        self.best_err = math.inf
        self.stop_requested = False

    # ---- checkpoints
    def meta(self):
        return {"config": asdict(self.cfg), "epoch": self.epoch, "iteration": self.iteration,
                "batch_in_epoch": self.batch_in_epoch, "epoch_rng": self.epoch_rng["rng"],
                "sums": list(self.sums), "best_err": self.best_err if math.isfinite(self.best_err) else None}

    def save(self, name):
        path = os.path.join(self.cfg.out, name)
        if self.dist.is_root:  # distributed: rank 0 alone writes
            save_checkpoint(path, self.model, self.optimizer, self.schedule, self.meta())
        return path

    def restore(self, ckpt):
        meta = ckpt["meta"]
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if isinstance(self.schedule, WarmupUntil):
            # The lr drops follow this call's budget (it may have grown); only where the
            # warm-up ended comes from the checkpoint. Otherwise the lr is a pure function
            # of the iteration and needs no state at all.
            self.schedule.load_state_dict({**ckpt["schedule"], "schedule": self.schedule.schedule.state_dict()})
        self.epoch, self.iteration, self.batch_in_epoch = meta["epoch"], meta["iteration"], meta["batch_in_epoch"]
        self.epoch_rng = {"rng": meta["epoch_rng"]}
        self.sums = [meta["sums"][0], meta["sums"][1], int(meta["sums"][2])]
        self.best_err = meta["best_err"] if meta["best_err"] is not None else math.inf

    # ---- one epoch
    def train_epoch(self, bar_factory):
        cfg, model, opt = self.cfg, self.model, self.optimizer
        self.loader.load_state_dict(self.epoch_rng)
        batches = self.loader.epoch(start_batch=self.batch_in_epoch)
        n_batches = min(len(self.loader) - self.batch_in_epoch, self.total - self.iteration)
        bar = bar_factory(total=n_batches, desc=f"epoch {self.epoch + 1}")
        model.train()
        start, seen = time.perf_counter(), 0
        for xb, yb in batches:
            self.stop_requested = self.dist.should_stop(self.stop_requested)  # distributed: all ranks stop together
            if self.iteration >= self.total or self.stop_requested:
                break
            self.schedule.step(self.iteration)
            logits = model(Tensor(xb))
            loss = F.cross_entropy(logits, yb)
            loss_value = float(loss.item())
            if not math.isfinite(loss_value):
                raise NonFiniteLoss(f"the loss became {loss_value} at iteration {self.iteration + 1} "
                                    f"(epoch {self.epoch + 1}, lr {opt.param_groups[0]['lr']:g})")
            opt.zero_grad()
            loss.backward()
            errors = int((logits.data.argmax(axis=1) != yb).sum())
            # distributed: one allreduce averages the gradients and sums the whole batch's statistics
            loss_sum, errors, images = self.dist.average_gradients(model, (loss_value * len(yb), errors, len(yb)))
            opt.step()
            self.sums[0] += loss_sum
            self.sums[1] += int(errors)
            self.sums[2] += int(images)
            self.iteration += 1
            self.batch_in_epoch += 1
            seen += int(images)
            if isinstance(self.schedule, WarmupUntil):
                self.schedule.observe_train_error(self.sums[1] / self.sums[2], self.iteration - 1)
            if bar is not None:
                rate = seen / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(loss=f"{self.sums[0] / self.sums[2]:.3f}",
                                err=f"{100 * self.sums[1] / self.sums[2]:.1f}%", img_s=f"{rate:.0f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        return time.perf_counter() - start, seen

    def finish_epoch(self, elapsed, seen):
        """Evaluate, record the epoch, checkpoint; then start the next epoch.

        When the budget ends in the middle of an epoch the row is recorded too, but the
        checkpoint keeps the position inside the epoch, so that a longer ``--resume`` goes on
        with the very batches an uninterrupted run would have seen.
        """
        cfg = self.cfg
        complete = self.batch_in_epoch >= len(self.loader)
        row = {"epoch": self.epoch + 1, "iteration": self.iteration,
               "lr": self.optimizer.param_groups[0]["lr"],
               "train_loss": self.sums[0] / self.sums[2], "train_err": self.sums[1] / self.sums[2],
               "val_loss": None, "val_err": None}
        if not self.dist.is_root:  # distributed: rank 0 alone evaluates and writes
            self._next_epoch(complete)
            return None
        if self.x_val is not None:
            row["val_loss"], row["val_err"] = evaluate(self.model, self.x_val, self.y_val, self.mean,
                                                       cfg.device, cfg.eval_batch_size)
        row["test_loss"], row["test_err"] = evaluate(self.model, self.x_test, self.y_test, self.mean,
                                                     cfg.device, cfg.eval_batch_size)
        row["epoch_time_s"], row["img_per_s"] = elapsed, seen / max(elapsed, 1e-9)
        self._next_epoch(complete)
        selection = row["val_err"] if row["val_err"] is not None else row["test_err"]
        self.save("last.npz")
        if selection < self.best_err:
            self.best_err = selection
            self.save("best.npz")
        append_metrics(cfg.out, row)
        return row

    def _next_epoch(self, complete):
        if complete:
            self.epoch += 1
            self.batch_in_epoch, self.sums = 0, [0.0, 0.0, 0]
            self.epoch_rng = self.loader.state_dict()  # the loader's rng is now at the next epoch's start

    def run(self):
        """Train up to the budget; returns the list of per-epoch metric rows of this call."""
        rows = []
        bar_factory = _progress_bar if self.cfg.progress and self.dist.is_root else (lambda **kw: None)
        previous = signal.getsignal(signal.SIGINT)

        def on_sigint(signum, frame):
            if self.stop_requested:  # a second Ctrl-C: stop right now
                raise KeyboardInterrupt
            self.stop_requested = True
            self.log("\nCtrl-C: finishing this iteration, then saving a checkpoint (Ctrl-C again to abort)")

        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            signal.signal(signal.SIGINT, on_sigint)
        try:
            while self.iteration < self.total:
                elapsed, seen = self.train_epoch(bar_factory)
                if self.stop_requested:
                    path = self.save("last.npz")
                    self.log(f"interrupted at iteration {self.iteration}; checkpoint saved to {path}; "
                             f"continue with: python -m minires.train --out {self.cfg.out} --resume")
                    raise KeyboardInterrupt
                if self.batch_in_epoch >= len(self.loader) or self.iteration >= self.total:
                    row = self.finish_epoch(elapsed, seen)
                    if row is not None:  # distributed: None on the ranks other than 0
                        rows.append(row)
                        self.log(format_row(row, self.total))
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous)
        return rows


def _progress_bar(total, desc):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, unit="batch")


def format_row(row, total):
    val = f"  val err {100 * row['val_err']:.2f}%" if row["val_err"] is not None else ""
    return (f"epoch {row['epoch']:3d}  iter {row['iteration']:6d}/{total}  lr {row['lr']:.4g}  "
            f"train loss {row['train_loss']:.4f} err {100 * row['train_err']:.2f}%{val}  "
            f"test loss {row['test_loss']:.4f} err {100 * row['test_err']:.2f}%  "
            f"{row['epoch_time_s']:.1f}s  {row['img_per_s']:.0f} img/s")


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


def truncate_metrics(out, epochs):
    """Keep the first ``epochs`` rows (a resumed run rewrites what came after its checkpoint)."""
    rows = [r for r in read_metrics(out) if r["epoch"] <= epochs]
    for name in ("metrics.csv", "metrics.jsonl"):
        path = os.path.join(out, name)
        if os.path.exists(path):
            os.remove(path)
    for row in rows:
        append_metrics(out, row)


def plot_curves(rows, path, title):
    """Training error (dashed) and test error (bold) against iterations, as in the paper's figures."""
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


def model_name(plain, depth):
    """'plain-56' or 'ResNet-56', as the paper names its nets."""
    return f"{'plain' if plain else 'ResNet'}-{depth}"


def run_name(plain, depth):
    """'plain56' or 'resnet56': the run directory's name (default ``--out`` is runs/<run_name>)."""
    return f"{'plain' if plain else 'resnet'}{depth}"


def build_model(cfg, device, seed=None):
    """The CIFAR net that ``cfg`` describes, on ``device``."""
    return cifar_resnet(cfg.depth, plain=cfg.plain, shortcut=cfg.shortcut, width=cfg.width, seed=seed).to(device)


def load_model(path, device="cpu"):
    """(model, config, checkpoint) from a checkpoint written by a training run."""
    ckpt = load_checkpoint(path)
    cfg = config_from_dict(ckpt["meta"]["config"])
    model = build_model(cfg, device)
    model.load_state_dict(ckpt["model"])
    return model, cfg, ckpt


# --------------------------------------------------------------------------- entry points

def train(cfg, resume=False, log=print):
    """Run (or resume) training for ``cfg``; returns a summary dict. The CLI and experiments call this."""
    dist = distributed.setup(cfg)  # distributed: this process alone, or this MPI rank
    with dist.abort_on_error():    # distributed: an error on any rank stops every rank
        return _train(cfg, resume, log if dist.is_root else (lambda *a, **k: None), dist)


def _train(cfg, resume, log, dist):
    if cfg.out is None:
        cfg.out = os.path.join("runs", run_name(cfg.plain, cfg.depth))
    os.makedirs(cfg.out, exist_ok=True)
    trainer = Trainer(cfg, log=log)
    last = os.path.join(cfg.out, "last.npz")
    if resume:
        trainer.restore(load_checkpoint(last))
        dist.broadcast_parameters(trainer.model)  # distributed: rank 0's weights on every rank
        if dist.is_root:  # distributed
            truncate_metrics(cfg.out, trainer.epoch)
        log(f"resuming {model_name(cfg.plain, cfg.depth)} from {last}: epoch {trainer.epoch}, iteration {trainer.iteration}")
    elif dist.is_root:  # distributed
        for name in ("metrics.csv", "metrics.jsonl"):
            if os.path.exists(os.path.join(cfg.out, name)):
                os.remove(os.path.join(cfg.out, name))
    if dist.is_root:  # distributed
        with open(os.path.join(cfg.out, "config.json"), "w") as f:
            json.dump(asdict(cfg), f, indent=2)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    log(f"{model_name(cfg.plain, cfg.depth)} ({n_params / 1e6:.2f}M parameters) on {cfg.device}; {len(trainer.x_train)} training "
        f"images, {len(trainer.loader)} batches/epoch, {trainer.total} iterations, lr {cfg.lr} "
        f"divided by 10 at iterations {trainer.milestones}; writing to {cfg.out}")
    if dist.size > 1:  # distributed
        log(f"data-parallel over {dist.size} MPI ranks: {cfg.batch_size // dist.size} images per rank per step, "
            f"{'synchronised' if cfg.sync_bn else 'per-rank'} batch-norm statistics")
    try:
        trainer.run()
    except NonFiniteLoss as e:
        log(f"stopping: {e}. The last good checkpoint is kept at {last}; try a lower --lr.")
        raise
    rows = read_metrics(cfg.out) if dist.is_root else []  # distributed: rank 0 holds the results
    if rows:
        plot_curves(rows, os.path.join(cfg.out, "curves.png"), f"{model_name(cfg.plain, cfg.depth)} on {cfg.dataset}")
    final = rows[-1] if rows else None
    if final:
        log(f"final test error {100 * final['test_err']:.2f}% (training error {100 * final['train_err']:.2f}%) "
            f"after {final['iteration']} iterations")
    return {"rows": rows, "final": final, "out": cfg.out, "trainer": trainer}


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m minires.train",
        description="Train a CIFAR-10 ResNet (He et al. 2015) with the paper's recipe. Defaults are the "
                    "paper's: ResNet-20, option A shortcuts, SGD momentum 0.9, weight decay 1e-4, batch 128, "
                    "lr 0.1 divided by 10 at 32k and 48k iterations, 64k iterations.")
    p.add_argument("--depth", type=int, default=20, help="6n+2: 20, 32, 44, 56, 110, 1202 (default 20)")
    p.add_argument("--plain", action="store_true", help="the plain twin, without shortcuts")
    p.add_argument("--shortcut", choices=["A", "B", "C"], default="A", help="the paper's shortcut option (default A)")
    p.add_argument("--width", type=int, default=16, help="filters of the first stage (default: the paper's 16)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=None, help="budget in epochs (default: the paper's 64000 iterations)")
    budget.add_argument("--iterations", type=int, default=None, help="budget in iterations")
    p.add_argument("--milestones", type=float, nargs="+", default=None,
                   help="lr divided by 10 at these epochs/iterations (same unit as the budget; "
                        "default: at 1/2 and 3/4 of the run)")
    p.add_argument("--batch-size", type=int, default=128, help="default 128")
    p.add_argument("--lr", type=float, default=0.1, help="initial learning rate (default 0.1)")
    p.add_argument("--momentum", type=float, default=0.9, help="default 0.9")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="default 1e-4")
    p.add_argument("--warmup", choices=["auto", "on", "off"], default="auto",
                   help="lr 0.01 until training error < 80%% (auto: on for depth >= 110, as the paper)")
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu", help="default cpu")
    p.add_argument("--dataset", choices=["cifar10", "synthetic"], default="cifar10",
                   help="synthetic: 2000 generated images, no files needed (default cifar10)")
    p.add_argument("--data-dir", default=None,
                   help="CIFAR-10 archive or directory (default: $MINIRES_DATA_DIR or ~/.cache/minires; "
                        "downloaded there when missing)")
    p.add_argument("--val-split", type=float, default=0,
                   help="hold out this many training images (or this fraction) for validation; "
                        "the paper's is 5000 (default 0: none)")
    p.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--out", default=None, help="run directory (default runs/resnet<depth> or runs/plain<depth>)")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights, shuffling and augmentation (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--eval-only", metavar="CHECKPOINT", default=None, help="evaluate a checkpoint and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI ranks: mpiexec -n N python -m minires.train --distributed ... "
                        "(needs mpi4py: pip install 'minires[mpi]'); same global batch and recipe")
    p.add_argument("--sync-bn", action="store_true",
                   help="with --distributed: batch-norm statistics over the whole global batch (default: each "
                        "rank's slice); a resumed run keeps its own setting")
    return p


def config_from_args(args):
    warmup = {"auto": None, "on": True, "off": False}[args.warmup]
    return TrainConfig(depth=args.depth, plain=args.plain, shortcut=args.shortcut, width=args.width,
                       epochs=args.epochs,
                       iterations=args.iterations, milestones=args.milestones, batch_size=args.batch_size,
                       lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay, warmup=warmup,
                       device=args.device, dataset=args.dataset, data_dir=args.data_dir,
                       val_split=args.val_split, train_limit=args.train_limit, out=args.out, seed=args.seed,
                       progress=not args.no_progress, distributed=args.distributed, sync_bn=args.sync_bn)


def config_from_dict(d):
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in d.items() if k in names})


def eval_only(path, args):
    model, cfg, ckpt = load_model(path, args.device)
    if args.data_dir is not None:
        cfg.data_dir = args.data_dir
    x_train, _, _, _, x_test, y_test = load_data(cfg)
    loss, err = evaluate(model, x_test, y_test, datasets.per_pixel_mean(x_train), args.device)
    print(f"{model_name(cfg.plain, cfg.depth)} from {path} (epoch {ckpt['meta']['epoch']}, iteration {ckpt['meta']['iteration']}): "
          f"test loss {loss:.4f}, test error {100 * err:.2f}% on {len(x_test)} images")
    return err


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.eval_only:
            eval_only(args.eval_only, args)
            return 0
        cfg = config_from_args(args)
        if args.resume:
            out = cfg.out or os.path.join("runs", run_name(cfg.plain, cfg.depth))
            saved = load_checkpoint(os.path.join(out, "last.npz"))["meta"]["config"]
            resumed = config_from_dict(saved)
            # Continue the same run: only the budget (and the lr drops, if given again) may change.
            for name in ("epochs", "iterations", "milestones"):
                if getattr(cfg, name) is not None:
                    setattr(resumed, name, getattr(cfg, name))
            if cfg.epochs is not None:
                resumed.iterations = None
            if cfg.iterations is not None:
                resumed.epochs = None
            resumed.out, resumed.progress, resumed.device = out, cfg.progress, cfg.device
            resumed.distributed = cfg.distributed  # distributed: the run may resume on any number of ranks
            cfg = resumed
        train(cfg, resume=args.resume)
    except KeyboardInterrupt:
        return 130
    except NonFiniteLoss:
        return 3
    except (FileNotFoundError, ValueError, RuntimeError, datasets.DownloadError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
