"""The machinery every exercise check shares: ``todo``, ``compare`` and ``check``.

A check is a function that runs the learner's code and calls ``compare`` on each result it
can verify; ``check`` turns what happens into a ``CheckResult``:

* the learner's code calls ``todo()`` (the untouched skeleton): status ``"not done"``;
* a ``compare`` finds a difference, or the learner's code raises: status ``"failed"``, with
  the message naming what is wrong (and the worst element) and a hint;
* otherwise ``"passed"``.

Before using what a learner's function returned, a check passes it through ``unpack`` (a
tuple of results) or ``returned`` (anything else), so that ``None`` (a missing ``return``)
or a wrong type fails with a message naming the function and what it returned, never with a
traceback from inside the check.

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


def describe(value):
    """A few words on what ``value`` is, for a message: "None", "a list of 2 items", "an array of
    shape (3,)", "the str 'abc'"."""
    if value is None:
        return "None"
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return f"the number {value}"
    if isinstance(value, (tuple, list, dict)):
        n = len(value)
        return f"a {type(value).__name__} of {n} item{'s' if n != 1 else ''}"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        kind = "an array" if type(value).__name__ == "ndarray" else f"a {type(value).__name__}"
        return f"{kind} of shape {tuple(value.shape)}"
    text = repr(value)
    return f"the {type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def name_of(function):
    """The learner's function (or class) as their code names it, for a message."""
    return getattr(function, "__name__", "your function")


_NO_RETURN = "a function that ends without a return statement returns None"


def returned(function, value, expected, hint="", where=""):
    """The ``ExerciseFailed`` to raise when the learner's ``function`` (its name) returned ``value``
    where it must return ``expected`` (words); ``where`` names the case. A missing return
    (``None``) gets its own hint."""
    hint = hint or (f"{_NO_RETURN}: end {function} with return ..." if value is None else "")
    tail = f"\n  hint: {hint}" if hint else ""
    case = f"{where}: " if where else ""
    return ExerciseFailed(f"{case}{function} returned {describe(value)}; it must return {expected}{tail}")


def unpack(function, value, names, hint=""):
    """``value``, what the learner's ``function`` returned, as a tuple of ``len(names)`` results
    (a list will do); otherwise raise ``returned(...)`` naming the tuple expected."""
    if isinstance(value, (tuple, list)) and len(value) == len(names):
        return tuple(value)
    raise returned(function, value, f"a tuple ({', '.join(names)})", hint)


def as_numbers(value):
    """``value`` (an array, a Tensor, a number, a list of numbers) as a NumPy array of numbers;
    None for anything else (None, a string, a dict, a list of arrays of different shapes)."""
    data = getattr(value, "data", value)  # a Tensor or an array
    if data is None or isinstance(data, (str, bytes, dict)):
        return None
    try:
        array = np.asarray(to_numpy(data))
    except (TypeError, ValueError):
        return None
    return array if array.dtype.kind in "biufc" else None


def matches(got, candidate, rtol=1e-6, atol=1e-9):
    """Whether ``got`` (anything the learner's code gave) is numbers of ``candidate``'s shape and
    values: how a check recognises a usual mistake, by rebuilding what it produces."""
    got = as_numbers(got)
    return got is not None and got.shape == candidate.shape and np.allclose(got, candidate, rtol=rtol, atol=atol)


def compare(what, got, expected, *, rtol=1e-5, atol=1e-7, hint=""):
    """Raise ``ExerciseFailed`` unless ``got`` matches ``expected`` (shape, then values).

    The message names ``what`` was compared, the shapes when they differ, else the worst
    element's index with both values, and ends with ``hint`` (the usual mistake)."""
    g, e = as_numbers(got), as_numbers(expected)
    tail = f"\n  hint: {hint}" if hint else ""
    if g is None or (isinstance(got, (tuple, list)) and g.shape != e.shape):
        raise ExerciseFailed(f"{what} is {describe(got)}; expected an array of shape {e.shape}{tail}")
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
