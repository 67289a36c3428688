"""What the exercise tests share: the learner's namespace and running a cell's source against a check.

Each test file takes a notebook's exercise skeletons (the committed cells), its reference
solutions (notebooks/solutions/) and planted wrong solutions, runs each in a fresh namespace
holding what the notebook's earlier cells import, and calls the exercise's check on the
function or class it defines.
"""
import numpy as np
import pytest

import minires
import minires.functional as F
from minires import Tensor
from minires.backend import get_array_module
from minires.exercises import todo

pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[dev]')")

from notebook_tools import exercise_cells, read, run_source, solution_blocks  # noqa: E402


def learner_namespace():
    """The names the notebooks' setup cells import, as an exercise cell sees them."""
    return {"np": np, "minires": minires, "F": F, "Tensor": Tensor, "todo": todo,
            "get_array_module": get_array_module}


def grade(source, defined, check_fn):
    """Run cell ``source``, then ``check_fn`` on the object it defines under the name ``defined``."""
    namespace = run_source(source, learner_namespace())
    return check_fn(namespace[defined])


class Exercises:
    """The exercise skeletons and reference solutions of one notebook."""

    def __init__(self, notebook):
        self.notebook = notebook
        self.cells = {name: cell.source for name, cell in exercise_cells(read(notebook)).items()}
        self.solutions = solution_blocks(notebook)


@pytest.fixture(autouse=True)
def learner_mode(monkeypatch):
    """Checks return their result (the learner's mode), they do not raise as in CI's solutions run."""
    monkeypatch.delenv("MINIRES_EXERCISES", raising=False)
