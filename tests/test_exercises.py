"""Every exercise keeps the contract: its check says "not done" on the skeleton committed in the
notebook, "passed" on the reference solution in notebooks/solutions/, and raises instead of
reporting when MINIRES_EXERCISES=solutions (how CI runs the notebooks). The planted wrong
solutions, each a usual mistake that its check must catch, are in tests/test_exercises_<topic>.py.
"""
import pytest

from exercise_tools import EXERCISES, Exercises, grade
from minires.exercises import ExerciseFailed
from notebook_tools import NOTEBOOK_DIR, exercise_cells, read

CASES = [(nb, name) for nb, exercises in EXERCISES.items() for name in exercises]


def test_every_notebook_with_exercises_is_listed():
    with_cells = {p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb") if exercise_cells(read(p.name))}
    assert with_cells == set(EXERCISES), "list every notebook's exercises in tests/exercise_tools.py EXERCISES"


@pytest.mark.parametrize("notebook", sorted(EXERCISES))
def test_every_exercise_has_a_check_and_a_solution(notebook):
    ex = Exercises(notebook)
    assert set(ex.cells) == set(EXERCISES[notebook]) == set(ex.solutions)


@pytest.mark.parametrize("notebook, name", CASES)
def test_skeleton_is_not_done(notebook, name):
    defined, check_fn = EXERCISES[notebook][name]
    result = grade(Exercises(notebook).cells[name], defined, check_fn)
    assert result.status == "not done", str(result)
    assert "not done yet" in str(result)


@pytest.mark.parametrize("notebook, name", CASES)
def test_reference_solution_passes(notebook, name):
    defined, check_fn = EXERCISES[notebook][name]
    result = grade(Exercises(notebook).solutions[name], defined, check_fn)
    assert result.status == "passed", str(result)


@pytest.mark.parametrize("notebook, name", CASES)
def test_strict_mode_raises_on_the_skeleton(notebook, name, monkeypatch):
    """With MINIRES_EXERCISES=solutions (CI's run) a check that does not pass raises."""
    monkeypatch.setenv("MINIRES_EXERCISES", "solutions")
    defined, check_fn = EXERCISES[notebook][name]
    with pytest.raises(ExerciseFailed, match="not done yet"):
        grade(Exercises(notebook).cells[name], defined, check_fn)
