"""Training a CIFAR-10 ResNet with the paper's recipe: the loop behind ``python -m minires.train``.

The recipe (He et al. 2015, Sec. 4.2): SGD with momentum 0.9 and weight decay 1e-4, batch 128,
lr 0.1 divided by 10 at 32k and 48k iterations, stop at 64k; per-pixel mean subtracted; 4-pixel
padding, random 32x32 crop and horizontal flip; ResNet-110 warms up at lr 0.01 until the
training error is below 80 %. Shorter runs (``epochs``/``iterations``) keep the schedule's
shape: the lr drops at 1/2 and 3/4 of the run unless ``milestones`` says otherwise.

    train(TrainConfig(depth=56, epochs=30))      # what the command line calls
    Trainer(cfg).run()                           # the loop itself, epoch by epoch

What a run writes, and reading it back: ``minires.rundir``. The options and their defaults:
``minires.config.TrainConfig``. One step: ``minires.step.train_step``. The command line:
``minires.train.cli``. A resumed run continues
exactly as if it had never stopped: same batches, same augmentation, same result, bit for bit.
"""
import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass

import numpy as np

from .. import autotune
from .. import data as datasets
from .. import distributed
from .. import functional as F
from ..backend import check_device
from ..checkpoint import NonFiniteCheckpoint, load_checkpoint, save_checkpoint
from ..cpu_memory import keep_freed_memory
from ..config import build_model, config_to_dict
from ..engine import Tensor, is_reference, no_grad
from ..optim import PAPER_TOTAL_ITERATIONS, PAPER_WARMUP_ERROR, PAPER_WARMUP_LR, SGD, MultiStepLR, WarmupUntil
from ..optim.lr_scheduler import paper_milestones
from ..rundir import (RunLock, clear_metrics, default_out, format_row, model_name, plot_curves, read_metrics,
                      write_config, write_metrics)
from ..step import train_step


#: A CPU run whose remaining time, measured over its first ESTIMATE_AFTER steps, is above this
#: many seconds prints the estimate and how to shorten the run.
ESTIMATE_AFTER, ESTIMATE_ABOVE_S = 10, 1800


class NonFiniteLoss(RuntimeError):
    """The loss, a test loss or the model's state became NaN or infinite."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM stopped the run after a checkpoint; ``signum`` says which."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# --------------------------------------------------------------------------- the data

def dataset_of(cfg):
    """The data set ``cfg`` names, as a ``minires.data.Dataset`` (arrays, identity, description).

    CIFAR-10 is found (or downloaded) by ``minires.data.find_or_download_cifar10``; ``cfg.subset``
    keeps the first images of each part.
    """
    return datasets.load_dataset(cfg.dataset, subset=cfg.subset, data_dir=cfg.data_dir, seed=cfg.seed,
                                 progress=cfg.progress)


def load_data(cfg, dataset=None):
    """(x_train, y_train, x_val, y_val, x_test, y_test) as uint8 images and int64 labels.

    From ``dataset`` (a ``minires.data.Dataset``) when given, else from :func:`dataset_of`; then
    ``cfg.train_limit`` and ``cfg.val_split`` are applied.
    """
    x_train, y_train, x_test, y_test = (dataset_of(cfg) if dataset is None else dataset)[:4]
    if cfg.train_limit:
        x_train, y_train = x_train[:cfg.train_limit], y_train[:cfg.train_limit]
    x_val = y_val = None
    if cfg.val_split:
        size = int(cfg.val_split) if cfg.val_split >= 1 else float(cfg.val_split)
        x_train, y_train, x_val, y_val = datasets.train_val_split(x_train, y_train, size, rng=cfg.seed)
    return x_train, y_train, x_val, y_val, x_test, y_test


def pixel_mean_of(ckpt, cfg, log=print):
    """The per-pixel mean a checkpointed model was trained with (its input normalisation).

    Stored in the checkpoint since the restructuring; for an older checkpoint it is recomputed
    from the training set that ``cfg`` describes (loading it), and ``log`` says so.
    """
    mean = ckpt["meta"].get("pixel_mean")
    if mean is not None:
        return np.asarray(mean, dtype=np.float32)
    log(f"this checkpoint predates the stored pixel mean: recomputing it from the training set ({cfg.dataset})")
    return datasets.per_pixel_mean(load_data(cfg)[0])


# --------------------------------------------------------------------------- the schedule

def plan(cfg, batches_per_epoch):
    """(total iterations, milestones in iterations) from the budget given in epochs or iterations."""
    if cfg.epochs is not None:
        total, unit = cfg.epochs * batches_per_epoch, batches_per_epoch
    else:
        total, unit = (cfg.iterations if cfg.iterations is not None else PAPER_TOTAL_ITERATIONS), 1
    if cfg.milestones is None:
        milestones = paper_milestones(total)
    else:
        milestones = [int(m * unit) for m in cfg.milestones]
    return total, milestones


def make_schedule(cfg, optimizer, milestones):
    """The lr schedule of ``cfg``: ``MultiStepLR`` at ``milestones``, wrapped in the paper's
    warm-up when ``cfg.warmup`` is on (by default for depth >= 110, as the paper does)."""
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

@dataclass
class EpochTotals:
    """Running totals of the current epoch's training batches."""

    loss_sum: float = 0.0   # sum of the per-image losses
    errors: int = 0         # misclassified images
    images: int = 0

    def add(self, mean_loss, errors, images):
        self.loss_sum += mean_loss * images
        self.errors += errors
        self.images += images

    @property
    def loss(self):
        return self.loss_sum / self.images

    @property
    def error(self):
        return self.errors / self.images


class Trainer:
    """One training run: model, optimiser, schedule, data, and where it stands."""

    def __init__(self, cfg, log=print):
        self.cfg, self.log = cfg.validate(), log
        self.dist = distributed.setup(cfg)  # distributed: this process alone, or this MPI rank
        cfg.device = check_device(cfg.device)
        if cfg.device == "cpu":
            keep_freed_memory()  # every step reuses the last one's memory: no page faults (cpu_memory.py)
        self.dataset = dataset_of(cfg)
        self.x_train, self.y_train, self.x_val, self.y_val, self.x_test, self.y_test = load_data(cfg, self.dataset)
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
        self.schedule = make_schedule(cfg, self.optimizer, self.milestones)
        self.graph_step = None
        if cfg.cuda_graph:
            from ..cuda_graph import CUDAGraphStep  # imports CuPy: only when asked for
            self.graph_step = CUDAGraphStep(self.model, self.optimizer)
        # Where the run stands; everything here goes into the checkpoint.
        self.epoch = 0              # epochs completed
        self.iteration = 0          # iterations completed
        self.batch_in_epoch = 0     # batches of the current epoch already done (non-zero after Ctrl-C)
        self.epoch_rng = self.loader.state_dict()   # the data RNG at the start of the current epoch
        self.totals = EpochTotals()
        self.best_err = math.inf
        self.stop_requested = False
        self.stop_signal = None     # the signal that asked for the stop (SIGINT or SIGTERM)
        self.rows = []              # every epoch's metrics row so far: the checkpoint carries them
        self.epoch_calls = 0        # train_epoch calls in this process (the time estimate is made in the first)
        self.conv_algorithms = {}   # the conv algorithm of each shape and direction (minires.autotune)

    # ---- checkpoints
    def meta(self):
        t = self.totals
        return {"config": config_to_dict(self.cfg), "data": self.dataset.identity, "epoch": self.epoch, "iteration": self.iteration,
                "batch_in_epoch": self.batch_in_epoch, "epoch_rng": self.epoch_rng["rng"],
                "sums": [t.loss_sum, t.errors, t.images], "pixel_mean": self.mean,
                "best_err": self.best_err if math.isfinite(self.best_err) else None, "rows": self.rows,
                "conv_algorithms": self.conv_algorithms}

    def save(self, name):
        path = os.path.join(self.cfg.out, name)
        if self.dist.is_root:  # distributed: rank 0 alone writes
            try:
                save_checkpoint(path, self.model, self.optimizer, self.schedule, self.meta())
            except NonFiniteCheckpoint as e:
                raise NonFiniteLoss(f"the model's state became non-finite by iteration {self.iteration} "
                                    f"(epoch {self.epoch}): {e}") from None
        return path

    def restore(self, ckpt):
        meta = ckpt["meta"]
        saved, now = meta.get("data"), self.dataset.identity  # checkpoints before identities: no "data"
        if saved is not None and saved["sha256"] != now["sha256"]:
            raise ValueError(
                f"resume: the run in {self.cfg.out} trained on {datasets.describe(saved)} (sha256 "
                f"{saved['sha256'][:12]}...), but the data found now is {datasets.describe(now)} (sha256 "
                f"{now['sha256'][:12]}...); point --data-dir at the run's data")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.resume_from(ckpt["schedule"])  # the budget of this call keeps its lr drops
        self.epoch, self.iteration, self.batch_in_epoch = meta["epoch"], meta["iteration"], meta["batch_in_epoch"]
        self.epoch_rng = {"rng": meta["epoch_rng"]}
        loss_sum, errors, images = meta["sums"]
        self.totals = EpochTotals(loss_sum, int(errors), int(images))
        self.best_err = meta["best_err"] if meta["best_err"] is not None else math.inf
        # The rows of the epochs completed (a budget that ended mid-epoch recorded a row that the
        # longer run replaces); checkpoints before rows were stored: the metrics file's.
        rows = meta["rows"] if "rows" in meta else read_metrics(self.cfg.out, warn=self.log)
        self.rows = [r for r in rows if r["epoch"] <= self.epoch]
        self.conv_algorithms = dict(meta.get("conv_algorithms", {}))  # reused: the same kernels, the same rounding

    def choose_conv_algorithms(self):
        """Decide every conv's algorithm before the first step, so that config.json records them.

        Rank 0 runs one forward and backward of a fresh twin of the model on a random batch of
        the step's size, inside ``autotune.pinned``: recorded choices (a resumed run's) stay, each
        new (shape, direction) is timed or read from the cache. Every rank then follows rank 0's
        table (distributed). On the GPU, or on the reference ops, there is nothing to choose.
        """
        if self.cfg.device != "cpu" or is_reference():
            return
        if self.dist.is_root:
            with autotune.pinned(self.conv_algorithms):
                twin = build_model(self.cfg, "cpu", seed=np.random.default_rng(0))
                x = np.random.default_rng(0).standard_normal(
                    (self.cfg.batch_size // self.dist.size,) + self.x_train.shape[1:]).astype(np.float32)
                twin(Tensor(x)).sum().backward()
        self.conv_algorithms = self.dist.all_gather(self.conv_algorithms)[0]  # distributed: rank 0's table

    # ---- one epoch
    def train_epoch(self, bar_factory):
        self.epoch_calls += 1
        model, totals = self.model, self.totals
        self.loader.load_state_dict(self.epoch_rng)
        batches = self.loader.epoch(start_batch=self.batch_in_epoch)
        n_batches = min(len(self.loader) - self.batch_in_epoch, self.total - self.iteration)
        bar = bar_factory(total=n_batches, desc=f"epoch {self.epoch + 1}")
        model.train()
        start, seen, steps = time.perf_counter(), 0, 0
        for xb, yb in batches:
            self.stop_requested = self.dist.should_stop(self.stop_requested)  # distributed: all ranks stop together
            if self.iteration >= self.total or self.stop_requested:
                break
            self.schedule.step(self.iteration)
            loss_value, errors, images = self._step(xb, yb)
            totals.add(loss_value, errors, images)
            self.iteration += 1
            self.batch_in_epoch += 1
            seen, steps = seen + images, steps + 1
            if steps == ESTIMATE_AFTER and self.epoch_calls == 1:
                self._say_estimate((time.perf_counter() - start) / steps, bar)
            self.schedule.observe(totals.error)  # the warm-up ends on the running training error
            if bar is not None:
                rate = seen / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(loss=f"{totals.loss:.3f}", err=f"{100 * totals.error:.1f}%", img_s=f"{rate:.0f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        return time.perf_counter() - start, seen

    def _say_estimate(self, step_s, bar):
        """A run long enough to matter (the paper's 64k iterations on a CPU) says so up front."""
        left_s = step_s * (self.total - self.iteration)
        if self.cfg.device != "cpu" or left_s < ESTIMATE_ABOVE_S:
            return
        ways = ["--epochs N or --iterations N (the lr drops keep their place in the run)"]
        if self.cfg.dataset == "cifar10" and self.cfg.subset is None:
            ways.append("--subset 4000 1000 (the learner's subset)")
        text = (f"estimated time: about {left_s / 3600:.1f} h for the {self.total - self.iteration:,} iterations "
                f"left, at {step_s:.2f} s each on this CPU (measured over the first {ESTIMATE_AFTER}; other work "
                f"on the machine slows it). To shorten it: {', '.join(ways)}, or --device gpu.")
        (bar.write if bar is not None else self.log)(text)

    def _step(self, xb, yb):
        """One training step on the batch: (mean loss, errors, images) of the whole batch."""
        if self.graph_step is not None:
            # The replay has already updated the parameters when the loss is read; the
            # checkpoint on disk (saved each epoch) is still the last good one.
            loss_data, errors = self.graph_step(xb, yb)
            loss_value = float(loss_data)
            self._check_finite(loss_value)
            return loss_value, int(errors), len(yb)
        batch = {}

        def before_update(loss, errors):  # a non-finite loss stops the run before the update
            loss_value = float(loss)
            self._check_finite(loss_value)
            # distributed: one allreduce averages the gradients and sums the whole batch's statistics
            batch["sums"] = self.dist.average_gradients(self.model, (loss_value * len(yb), int(errors), len(yb)))

        train_step(self.model, self.optimizer, Tensor(xb), yb, before_update)
        loss_sum, errors, images = batch["sums"]
        return loss_sum / images, int(errors), int(images)

    def _check_finite(self, loss_value):
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(f"the loss became {loss_value} at iteration {self.iteration + 1} "
                                f"(epoch {self.epoch + 1}, lr {self.optimizer.param_groups[0]['lr']:g})")

    def finish_epoch(self, elapsed, seen):
        """Evaluate, record the epoch, checkpoint; then start the next epoch.

        When the budget ends in the middle of an epoch the row is recorded too, but the
        checkpoint keeps the position inside the epoch, so that a longer ``--resume`` goes on
        with the very batches an uninterrupted run would have seen.
        """
        cfg = self.cfg
        complete = self.batch_in_epoch >= len(self.loader)
        if not self.dist.is_root:  # distributed: rank 0 alone evaluates and writes
            self._next_epoch(complete)
            return None
        row = {"epoch": self.epoch + 1, "iteration": self.iteration,
               "lr": self.optimizer.param_groups[0]["lr"],
               "train_loss": self.totals.loss, "train_err": self.totals.error,
               "val_loss": None, "val_err": None}
        if self.x_val is not None:
            row["val_loss"], row["val_err"] = evaluate(self.model, self.x_val, self.y_val, self.mean,
                                                       cfg.device, cfg.eval_batch_size)
        row["test_loss"], row["test_err"] = evaluate(self.model, self.x_test, self.y_test, self.mean,
                                                     cfg.device, cfg.eval_batch_size)
        row["epoch_time_s"], row["img_per_s"] = elapsed, seen / max(elapsed, 1e-9)
        bad = [k for k in ("test_loss", "val_loss") if row[k] is not None and not math.isfinite(row[k])]
        if bad:
            raise NonFiniteLoss(f"the {bad[0].replace('_', ' ')} became {row[bad[0]]} after iteration {self.iteration} "
                                f"(epoch {self.epoch + 1})")
        self._next_epoch(complete)
        self.rows.append(row)
        selection = row["val_err"] if row["val_err"] is not None else row["test_err"]
        self.save("last.npz")  # carries self.rows: the metrics files below are rebuilt from it
        if selection < self.best_err:
            self.best_err = selection
            self.save("best.npz")
        write_metrics(cfg.out, self.rows)
        return row

    def _next_epoch(self, complete):
        if complete:
            self.epoch += 1
            self.batch_in_epoch, self.totals = 0, EpochTotals()
            self.epoch_rng = self.loader.state_dict()  # the loader's rng is now at the next epoch's start

    def run(self):
        """Train up to the budget; returns the list of per-epoch metric rows of this call."""
        rows = []
        bar_factory = _progress_bar if self.cfg.progress and self.dist.is_root else (lambda **kw: None)
        stop_signals = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and what timeout, SLURM and Kubernetes send
        previous = {s: signal.getsignal(s) for s in stop_signals}

        def on_signal(signum, frame):
            if self.stop_requested:  # a second signal: stop right now
                raise KeyboardInterrupt
            self.stop_requested, self.stop_signal = True, signum
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            self.log(f"\n{name}: finishing this iteration, then saving a checkpoint (Ctrl-C again to abort)")

        in_main_thread = threading.current_thread() is threading.main_thread()
        if in_main_thread:
            for s in stop_signals:
                signal.signal(s, on_signal)
        try:
            while self.iteration < self.total:
                elapsed, seen = self.train_epoch(bar_factory)
                # distributed: a Ctrl-C that came after the epoch's last agreed step must be agreed too
                self.stop_requested = self.dist.should_stop(self.stop_requested)
                if self.stop_requested:
                    path = self.save("last.npz")
                    self.log(f"interrupted at iteration {self.iteration}; checkpoint saved to {path}; "
                             f"continue with: python -m minires.train --out {self.cfg.out} --resume")
                    raise Interrupted(self.stop_signal or signal.SIGINT)  # distributed: another rank's signal
                if self.batch_in_epoch >= len(self.loader) or self.iteration >= self.total:
                    row = self.finish_epoch(elapsed, seen)
                    if row is not None:  # distributed: None on the ranks other than 0
                        rows.append(row)
                        self.log(format_row(row, self.total))
        finally:
            if in_main_thread:
                for s, handler in previous.items():
                    signal.signal(s, handler)
        return rows


def _progress_bar(total, desc):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, unit="batch")


# --------------------------------------------------------------------------- entry point

def train(cfg, resume=False, log=print):
    """Run (or resume) training for ``cfg``; returns a summary dict. The CLI and experiments call this."""
    dist = distributed.setup(cfg)  # distributed: this process alone, or this MPI rank
    with dist.abort_on_error():    # distributed: an error on any rank stops every rank
        return _train(cfg, resume, log if dist.is_root else (lambda *a, **k: None), dist)


def _train(cfg, resume, log, dist):
    if cfg.out is None:
        cfg.out = default_out(cfg)
    trainer = Trainer(cfg, log=log)  # finds the data first: a run that cannot start leaves no folder
    if resume and not os.path.isfile(os.path.join(cfg.out, "last.npz")):
        raise FileNotFoundError(f"--resume: no checkpoint {os.path.join(cfg.out, 'last.npz')} to resume from")
    os.makedirs(cfg.out, exist_ok=True)
    with RunLock(cfg.out) if dist.is_root else contextlib.nullcontext():  # distributed: rank 0 alone writes
        return _train_locked(cfg, resume, log, dist, trainer)


def _train_locked(cfg, resume, log, dist, trainer):
    last = os.path.join(cfg.out, "last.npz")
    if resume:
        trainer.restore(load_checkpoint(last))
        dist.broadcast_parameters(trainer.model)  # distributed: rank 0's weights on every rank
        if dist.is_root:  # distributed
            write_metrics(cfg.out, trainer.rows)
        log(f"resuming {model_name(cfg.plain, cfg.depth)} from {last}: epoch {trainer.epoch}, iteration {trainer.iteration}")
    elif dist.is_root:  # distributed
        clear_metrics(cfg.out)
    start = time.perf_counter()
    trainer.choose_conv_algorithms()
    if trainer.conv_algorithms:  # the first run on a machine times the convs: a pause worth explaining
        log(f"conv algorithms: {len(trainer.conv_algorithms)} (shape, direction) choices ready in "
            f"{time.perf_counter() - start:.1f} s (timed once per machine and cached: python -m minires.autotune)")
    if dist.is_root:  # distributed
        write_config(cfg.out, cfg, trainer.dataset.identity, trainer.conv_algorithms)
    log(f"data: {trainer.dataset.description}")
    n_params = sum(p.numel() for p in trainer.model.parameters())
    log(f"{model_name(cfg.plain, cfg.depth)} ({n_params / 1e6:.2f}M parameters) on {cfg.device}; {len(trainer.x_train)} training "
        f"images, {len(trainer.loader)} batches/epoch, {trainer.total} iterations, lr {cfg.lr} "
        f"divided by 10 at iterations {trainer.milestones}; writing to {cfg.out}")
    if dist.size > 1:  # distributed
        log(f"data-parallel over {dist.size} MPI ranks: {cfg.batch_size // dist.size} images per rank per step, "
            f"{'synchronised' if cfg.sync_bn else 'per-rank'} batch-norm statistics")
    try:
        with autotune.pinned(trainer.conv_algorithms, decide=dist.is_root):  # distributed: rank 0 decides
            trainer.run()
    except NonFiniteLoss as e:
        kept = (f"The last finite checkpoint, {last} (iteration {load_checkpoint(last)['meta']['iteration']}), is "
                "kept: --resume continues from it" if os.path.isfile(last) else "No checkpoint was written")
        log(f"stopping: {e}. {kept}; try a lower --lr.")
        raise
    rows = trainer.rows if dist.is_root else []  # distributed: rank 0 holds the results
    if rows:
        _plot(rows, cfg, log)
    final = rows[-1] if rows else None
    if final:
        log(f"final test error {100 * final['test_err']:.2f}% (training error {100 * final['train_err']:.2f}%) "
            f"after {final['iteration']} iterations")
    return {"rows": rows, "final": final, "out": cfg.out, "trainer": trainer}


def _plot(rows, cfg, log):
    """curves.png, or one line saying which extra draws it (training itself needs only NumPy)."""
    try:
        plot_curves(rows, os.path.join(cfg.out, "curves.png"), f"{model_name(cfg.plain, cfg.depth)} on {cfg.dataset}")
    except ImportError:
        log("curves.png not drawn: matplotlib is not installed (pip install 'minires[train]' adds it)")

