"""Exercises for the teaching notebooks, and the checks that grade them.

A notebook's exercise cell (tagged ``exercise:NAME`` in its metadata) holds a skeleton: the
shapes, a hint, and ``todo("...")`` where the learner's code goes. The next cell calls a check
from this package, e.g. ``check_tanh(Tanh)``, which runs the learner's code against the
library's own and reports like ``gradcheck`` does: what is wrong, the worst element, expected
and got, and the hint for the usual mistake. An untouched skeleton reports "not done yet"
instead of a traceback, so the notebook still runs top to bottom.

Reference solutions live in ``notebooks/solutions/`` (one file per notebook, one
``# %% exercise: NAME`` block per exercise). CI executes every notebook with those blocks
in place of the skeletons and ``MINIRES_EXERCISES=solutions`` in the environment, which makes
a failing or unfinished check raise; ``tests/test_exercises_*.py`` prove that every check fails
on its skeleton and on a planted wrong solution.
"""
from .check import CheckResult, ExerciseFailed, NotDone, check, compare, returned, todo, unpack

__all__ = ["CheckResult", "ExerciseFailed", "NotDone", "check", "compare", "returned", "todo", "unpack"]
