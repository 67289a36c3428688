"""The machinery every exercise check shares: ``todo``, ``compare`` and ``check``.

A check is a function that runs the learner's code and calls ``compare`` on each result it
can verify; ``check`` turns what happens into a ``CheckResult``:

* the learner's code calls ``todo()`` (the untouched skeleton): status ``"not done"``;
* a ``compare`` finds a difference, or the learner's code raises: status ``"failed"``, with
  the message naming what is wrong (and the worst element) and a hint;
* otherwise ``"passed"``.

The result prints itself in a notebook. With ``MINIRES_EXERCISES=solutions`` in the
environment (how CI executes the notebooks with the reference solutions filled in), anything
but ``"passed"`` raises ``ExerciseFailed``, so a broken solution or check fails CI.
"""
import os
import traceback
from dataclasses import dataclass

import numpy as np

from ..backend import to_numpy


class NotDone(NotImplementedError):
    """Raised by ``todo()``: the skeleton has not been filled in yet."""


class ExerciseFailed(AssertionError):
    """A check found the learner's result wrong (raised by ``compare``)."""


def todo(what="your code here"):
    """Marks the place in a skeleton where the learner's code goes; raises ``NotDone``."""
    raise NotDone(what)


@dataclass
class CheckResult:
    """What a check found: ``status`` is ``"passed"``, ``"failed"`` or ``"not done"``."""

    name: str
    status: str
    message: str

    @property
    def passed(self):
        return self.status == "passed"

    def __bool__(self):
        return self.passed

    def __str__(self):
        mark = {"passed": "PASSED", "failed": "FAILED", "not done": "not done yet"}[self.status]
        return f"[{mark}] {self.name}: {self.message}"

    def _repr_pretty_(self, printer, cycle):  # IPython shows the report, not the dataclass
        printer.text(str(self))


def _as_array(value):
    data = getattr(value, "data", value)  # a Tensor or an array
    return np.asarray(to_numpy(data)) if data is not None else None


def compare(what, got, expected, *, rtol=1e-5, atol=1e-7, hint=""):
    """Raise ``ExerciseFailed`` unless ``got`` matches ``expected`` (shape, then values).

    The message names ``what`` was compared, the shapes when they differ, else the worst
    element's index with both values, and ends with ``hint`` (the usual mistake)."""
    g, e = _as_array(got), _as_array(expected)
    tail = f"\n  hint: {hint}" if hint else ""
    if g is None:
        raise ExerciseFailed(f"{what} is None; expected an array of shape {e.shape}{tail}")
    if g.shape != e.shape:
        raise ExerciseFailed(f"{what} has shape {g.shape}, expected {e.shape}{tail}")
    if not np.all(np.isfinite(g)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(g))[0])
        raise ExerciseFailed(f"{what} holds a non-finite value at index {bad}: {g[bad]}{tail}")
    err = np.abs(g.astype(np.float64) - e.astype(np.float64))
    bound = atol + rtol * np.abs(e.astype(np.float64))
    if np.any(err > bound):
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        idx = tuple(int(i) for i in worst)
        wrong = int(np.sum(err > bound))
        raise ExerciseFailed(
            f"{what} differs in {wrong} of {err.size} elements; worst at index {idx}: "
            f"expected {e[idx]:.6g}, got {g[idx]:.6g} (|error| {err[idx]:.3g}){tail}"
        )


_LIBRARY_DIRS = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.dirname(np.__file__))


def _learner_frame(exc):
    """The innermost frame of the traceback outside minires and NumPy: the learner's line,
    not the library line where their bad argument finally failed."""
    frames = traceback.extract_tb(exc.__traceback__)
    theirs = [f for f in frames if not os.path.abspath(f.filename).startswith(_LIBRARY_DIRS)]
    return (theirs or frames)[-1]


def check(name, run, success="matches the library"):
    """Run ``run()`` (which calls the learner's code and ``compare``) and report.

    Returns a ``CheckResult``; raises ``ExerciseFailed`` instead of returning a result that
    did not pass when ``MINIRES_EXERCISES=solutions`` is set."""
    try:
        detail = run()
        result = CheckResult(name, "passed", detail if isinstance(detail, str) else success)
    except NotDone as exc:
        result = CheckResult(name, "not done", f"fill in the skeleton ({exc}), then run this cell again")
    except ExerciseFailed as exc:
        result = CheckResult(name, "failed", str(exc))
    except Exception as exc:  # the learner's code raised: show where, without a wall of traceback
        frame = _learner_frame(exc)
        where = f" (line {frame.lineno}: {frame.line})" if frame.line else f" (line {frame.lineno})"
        result = CheckResult(name, "failed", f"your code raised {type(exc).__name__}: {exc}{where}")
    if not result.passed and os.environ.get("MINIRES_EXERCISES") == "solutions":
        raise ExerciseFailed(str(result))
    return result
