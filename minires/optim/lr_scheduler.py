"""Learning-rate schedules, stepped once per *iteration*: ``MultiStepLR``, ``WarmupUntil``,
and the paper's schedule (``paper_schedule``).

The paper (Sec. 4.2) trains its CIFAR-10 ResNets with a learning rate of 0.1, divided by 10 at
32k and 48k iterations, and stops at 64k iterations. ResNet-110 first *warms up* at 0.01 until
the training error is below 80 % (about 400 iterations), then goes back to 0.1.

A typical loop::

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    schedule = paper_schedule(opt)            # sets opt's lr for iteration 0
    for it in range(schedule.total_iterations):
        schedule.step(it)                     # the lr of iteration `it` (a pure function of it)
        opt.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        opt.step()
        schedule.observe(running_train_error)  # only the warm-up listens
"""
import bisect

from .._checks import check_int, check_real

__all__ = [
    "LRSchedule", "MultiStepLR", "WarmupUntil", "paper_schedule", "paper_milestones",
    "PAPER_LR", "PAPER_MILESTONES", "PAPER_TOTAL_ITERATIONS", "PAPER_WARMUP_LR", "PAPER_WARMUP_ERROR",
]

# The CIFAR-10 recipe of He et al. (2015), Sec. 4.2.
PAPER_LR = 0.1
PAPER_MILESTONES = (32000, 48000)
PAPER_TOTAL_ITERATIONS = 64000
PAPER_WARMUP_LR = 0.01
PAPER_WARMUP_ERROR = 0.8


def paper_milestones(total):
    """Where the paper's lr drops sit in a run of ``total`` iterations: 1/2 and 3/4 of it
    (32k and 48k of 64k), without duplicates or drops at 0."""
    return sorted({m for m in (total // 2, total * 3 // 4) if 0 < m < total})


def _check_iteration(iteration, where):
    return check_int(where, "iteration", iteration, minimum=0)


class LRSchedule:
    """Base class of the learning-rate schedules: ``lr_at(iteration)`` plus stepping.

    The learning rate of a schedule is a *pure function of the iteration count*
    (``lr_at(it)``, iterations counted from 0). Resuming a run bit-for-bit then needs only the
    iteration number: nothing accumulates in the schedule (unlike PyTorch's chained
    schedulers, which multiply the lr step by step).

    ``step(it)`` writes ``lr_at(it)`` into every param group of the optimizer and records
    ``last_iteration = it``. Two ways to drive it, both fine:

    * explicit: call ``schedule.step(it)`` at the start of iteration ``it``, before
      ``opt.step()``;
    * PyTorch style: construction already sets the lr of iteration 0; call ``schedule.step()``
      (no argument: ``last_iteration + 1``) after each ``opt.step()``.

    ``optimizer`` may be None, to plot or query ``lr_at`` alone.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.last_iteration = 0
        self._apply()  # as in PyTorch, a new schedule sets the lr of the first iteration

    def lr_at(self, iteration):
        """The learning rate of iteration ``iteration`` (0-based)."""
        raise NotImplementedError

    def step(self, iteration=None):
        """Set the optimizer's lr to ``lr_at(iteration)`` (default: ``last_iteration + 1``)."""
        if iteration is None:
            iteration = self.last_iteration + 1
        self.last_iteration = _check_iteration(iteration, f"{type(self).__name__}.step")
        self._apply()
        return self.lr_at(self.last_iteration)

    def observe(self, train_error):
        """Hear the running training error (a fraction) after an iteration. A no-op here; the
        warm-up (``WarmupUntil``) ends when it drops below its threshold. The training loop
        calls it for every schedule, so it needs to know of none in particular."""

    def resume_from(self, state_dict):
        """Take from a checkpointed ``state_dict()`` what a resumed run keeps. Nothing here: the
        lr is a pure function of the iteration, and the resumed run's budget (which may have
        grown) decides the milestones. ``WarmupUntil`` keeps where its warm-up ended."""

    def get_last_lr(self):
        """The lr of ``last_iteration``, one per param group (PyTorch's name)."""
        groups = self.optimizer.param_groups if self.optimizer is not None else [None]
        return [self.lr_at(self.last_iteration) for _ in groups]

    def _apply(self):
        if self.optimizer is not None:
            lr = self.lr_at(self.last_iteration)
            for group in self.optimizer.param_groups:
                group["lr"] = lr


class MultiStepLR(LRSchedule):
    """Step decay: the lr is multiplied by ``gamma`` at each milestone (in iterations).

    ``MultiStepLR(optimizer, base_lr, milestones, gamma=0.1, total_iterations=None)``::

        lr_at(it) = base_lr · gamma^k,    k = number of milestones m with m <= it

    so with milestones [32000, 48000]: iterations 0..31999 use base_lr, 32000..47999 use
    base_lr·gamma, 48000.. use base_lr·gamma² (PyTorch's ``MultiStepLR`` counts the same way).
    Milestones must be strictly increasing and positive. ``total_iterations`` (optional) is
    where training stops: stored for the training loop, and every milestone must lie before
    it (a milestone past the end is usually an epochs-vs-iterations mix-up).
    For milestones in epochs, use ``MultiStepLR.from_epochs``.
    """

    def __init__(self, optimizer, base_lr, milestones, gamma=0.1, total_iterations=None):
        self._configure(base_lr, milestones, gamma, total_iterations, "MultiStepLR")
        super().__init__(optimizer)

    def _configure(self, base_lr, milestones, gamma, total_iterations, where):
        base_lr = check_real(where, "base_lr", base_lr, minimum=0.0)
        gamma = check_real(where, "gamma", gamma, minimum=0.0, strictly=True)
        if isinstance(milestones, (str, dict, set, frozenset)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"{where}: milestones must be a list of iterations, got {milestones!r}")
        milestones = [check_int(where, "milestone", m, minimum=1) for m in milestones]
        if any(a >= b for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"{where}: milestones must be strictly increasing, got {milestones}")
        if total_iterations is not None:
            total_iterations = check_int(where, "total_iterations", total_iterations, minimum=1)
            if milestones and milestones[-1] >= total_iterations:
                raise ValueError(
                    f"{where}: milestone {milestones[-1]} is not before total_iterations="
                    f"{total_iterations} (milestones and total must both be in iterations)"
                )
        self.base_lr, self.milestones, self.gamma = base_lr, milestones, gamma
        self.total_iterations = total_iterations

    @classmethod
    def from_epochs(cls, optimizer, base_lr, milestones, iterations_per_epoch, gamma=0.1,
                    total_epochs=None):
        """A ``MultiStepLR`` whose milestones (and total) are given in whole epochs.

        Epoch ``e`` starts at iteration ``e · iterations_per_epoch``, so that is where a
        milestone at epoch ``e`` takes effect. Everything is stored in iterations.
        """
        where = "MultiStepLR.from_epochs"
        per_epoch = check_int(where, "iterations_per_epoch", iterations_per_epoch, minimum=1)
        if isinstance(milestones, (str, dict, set, frozenset)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"{where}: milestones must be a list of epochs, got {milestones!r}")
        its = [check_int(where, "milestone (epochs)", e, minimum=1) * per_epoch for e in milestones]
        total = None
        if total_epochs is not None:
            total = check_int(where, "total_epochs", total_epochs, minimum=1) * per_epoch
        return cls(optimizer, base_lr, its, gamma=gamma, total_iterations=total)

    def lr_at(self, iteration):
        iteration = _check_iteration(iteration, "MultiStepLR.lr_at")
        # bisect_right counts the milestones <= iteration: the lr changes *at* a milestone.
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, iteration)

    def state_dict(self):
        """``{"base_lr", "milestones", "gamma", "total_iterations", "last_iteration"}``."""
        return {
            "base_lr": self.base_lr,
            "milestones": list(self.milestones),
            "gamma": self.gamma,
            "total_iterations": self.total_iterations,
            "last_iteration": self.last_iteration,
        }

    def load_state_dict(self, state_dict):
        """Restore everything from ``state_dict()`` and set the lr of ``last_iteration``."""
        where = "MultiStepLR.load_state_dict"
        keys = ("base_lr", "milestones", "gamma", "total_iterations", "last_iteration")
        _check_keys(state_dict, keys, where)
        last = _check_iteration(state_dict["last_iteration"], where)
        self._configure(state_dict["base_lr"], state_dict["milestones"], state_dict["gamma"],
                        state_dict["total_iterations"], where)
        self.last_iteration = last
        self._apply()

    def __repr__(self):
        return (f"MultiStepLR(base_lr={self.base_lr}, milestones={self.milestones}, "
                f"gamma={self.gamma}, total_iterations={self.total_iterations})")


class WarmupUntil(LRSchedule):
    """A warm-up at a small lr until the training error first drops below a threshold.

    ``WarmupUntil(schedule, error_threshold=0.8, warmup_lr=0.01)`` wraps another schedule
    (e.g. ``paper_schedule(opt)``). For ResNet-110 the paper uses "0.01 to warm up the training
    until the training error is below 80 % (about 400 iterations), and then go back to 0.1".
    How long that takes depends on the data, so the training loop reports the error::

        schedule.step(it)                 # lr of iteration it
        ... forward, backward, opt.step() ...
        schedule.observe_train_error(running_error)   # a fraction in [0, 1]

    Call ``observe_train_error`` every iteration (or every N: the check happens on each call)
    with the running training error, e.g. the mean over the current epoch so far or the last
    few dozen iterations: a single batch of 128 is noisy enough to cross 80 % by chance. The
    first time the error is strictly below ``error_threshold``, the warm-up ends *after* that
    iteration ``e`` (recorded as ``warmup_end_iteration``) and never restarts::

        lr_at(it) = warmup_lr            if warm-up not over or it <= e
                    schedule.lr_at(it)   otherwise

    The wrapped schedule keeps counting from iteration 0 (its milestones are absolute, as in
    the paper: 0.1 until 32k, not 32k after the warm-up). Given ``e``, the lr is again a pure
    function of the iteration, which is why a resumed run continues bit-for-bit.
    """

    def __init__(self, schedule, error_threshold=PAPER_WARMUP_ERROR, warmup_lr=PAPER_WARMUP_LR):
        if not isinstance(schedule, LRSchedule):
            raise TypeError(f"WarmupUntil: schedule must be an LRSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.error_threshold = check_real("WarmupUntil", "error_threshold", error_threshold, minimum=0.0)
        if self.error_threshold > 1:
            raise ValueError(
                f"WarmupUntil: error_threshold must be a fraction in [0, 1], got "
                f"{self.error_threshold!r} (a percentage?)"
            )
        self.warmup_lr = check_real("WarmupUntil", "warmup_lr", warmup_lr, minimum=0.0)
        self.warmup_end_iteration = None
        super().__init__(schedule.optimizer)
        self.last_iteration = schedule.last_iteration
        self._apply()

    @property
    def warmup_done(self):
        """Whether the training error has dropped below the threshold yet."""
        return self.warmup_end_iteration is not None

    @property
    def total_iterations(self):
        """Where training stops: the wrapped schedule's ``total_iterations``."""
        return getattr(self.schedule, "total_iterations", None)

    def lr_at(self, iteration):
        iteration = _check_iteration(iteration, "WarmupUntil.lr_at")
        if self.warmup_end_iteration is None or iteration <= self.warmup_end_iteration:
            return self.warmup_lr
        return self.schedule.lr_at(iteration)

    def step(self, iteration=None):
        lr = super().step(iteration)
        self.schedule.last_iteration = self.last_iteration  # keeps its state_dict in step
        return lr

    def observe(self, train_error):
        """``observe_train_error(train_error)`` at ``last_iteration``."""
        self.observe_train_error(train_error)

    def observe_train_error(self, error, iteration=None):
        """Report the training error (a fraction) of ``iteration`` (default: ``last_iteration``).

        Ends the warm-up the first time ``error < error_threshold``; later calls change
        nothing. Returns ``warmup_done``.
        """
        error = check_real("WarmupUntil.observe_train_error", "error", error, minimum=0.0)
        if error > 1:
            raise ValueError(
                f"WarmupUntil.observe_train_error: error must be a fraction in [0, 1], got "
                f"{error!r} (a percentage?)"
            )
        if iteration is None:
            iteration = self.last_iteration
        iteration = _check_iteration(iteration, "WarmupUntil.observe_train_error")
        if not self.warmup_done and error < self.error_threshold:
            self.warmup_end_iteration = iteration
            # The lr of iterations after `iteration` changes; if the loop already stepped
            # past it (PyTorch style), the optimizer needs the new value now.
            self._apply()
        return self.warmup_done

    def resume_from(self, state_dict):
        """Keep where the saved warm-up ended; the wrapped schedule stays as built (see the base)."""
        self.load_state_dict({**state_dict, "schedule": self.schedule.state_dict()})

    def state_dict(self):
        """Threshold, warm-up lr, ``warmup_done``, ``warmup_end_iteration`` (None while warming
        up), ``last_iteration`` and the wrapped schedule's state under ``"schedule"``."""
        return {
            "error_threshold": self.error_threshold,
            "warmup_lr": self.warmup_lr,
            "warmup_done": self.warmup_done,
            "warmup_end_iteration": self.warmup_end_iteration,
            "last_iteration": self.last_iteration,
            "schedule": self.schedule.state_dict(),
        }

    def load_state_dict(self, state_dict):
        """Restore from ``state_dict()`` (the wrapped schedule too) and set the current lr."""
        where = "WarmupUntil.load_state_dict"
        _check_keys(state_dict, ("error_threshold", "warmup_lr", "warmup_done",
                                 "warmup_end_iteration", "last_iteration", "schedule"), where)
        end = state_dict["warmup_end_iteration"]
        if end is not None:
            end = check_int(where, "warmup_end_iteration", end, minimum=0)
        if bool(state_dict["warmup_done"]) != (end is not None):
            raise ValueError(
                f"{where}: warmup_done={state_dict['warmup_done']!r} contradicts "
                f"warmup_end_iteration={end!r}"
            )
        threshold = check_real(where, "error_threshold", state_dict["error_threshold"], minimum=0.0)
        warmup_lr = check_real(where, "warmup_lr", state_dict["warmup_lr"], minimum=0.0)
        last = _check_iteration(state_dict["last_iteration"], where)
        self.schedule.load_state_dict(state_dict["schedule"])
        self.error_threshold, self.warmup_lr = threshold, warmup_lr
        self.warmup_end_iteration, self.last_iteration = end, last
        self._apply()

    def __repr__(self):
        return (f"WarmupUntil({self.schedule!r}, error_threshold={self.error_threshold}, "
                f"warmup_lr={self.warmup_lr}, warmup_end_iteration={self.warmup_end_iteration})")


def _check_keys(state_dict, keys, where):
    if not isinstance(state_dict, dict) or set(state_dict) != set(keys):
        got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
        raise ValueError(f"{where}: expected a dict with keys {sorted(keys)}, got {got}")


def paper_schedule(optimizer, total_iterations=PAPER_TOTAL_ITERATIONS, warmup=False):
    """The paper's CIFAR-10 schedule: lr 0.1, ÷10 at 32k and 48k iterations, stop at 64k.

    Returns ``MultiStepLR(optimizer, 0.1, [32000, 48000], gamma=0.1, total_iterations=64000)``.
    A shorter ``total_iterations`` keeps the shape: milestones at 1/2 and 3/4 of the run
    (exactly where the paper's are). ``warmup=True`` wraps it in
    ``WarmupUntil(..., error_threshold=0.8, warmup_lr=0.01)``, as the paper does for ResNet-110.
    """
    total = check_int("paper_schedule", "total_iterations", total_iterations, minimum=4)
    schedule = MultiStepLR(optimizer, PAPER_LR, paper_milestones(total), gamma=0.1, total_iterations=total)
    if warmup:
        schedule = WarmupUntil(schedule, error_threshold=PAPER_WARMUP_ERROR, warmup_lr=PAPER_WARMUP_LR)
    return schedule
