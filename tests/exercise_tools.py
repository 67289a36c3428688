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
from minires.exercises.autograd import check_tanh, check_topological_order
from minires.exercises.batch_norm import check_batch_norm_backward, check_running_stats
from minires.exercises.conv import check_im2col_loops, check_window_view
from minires.exercises.recipe import check_sgd_step
from minires.exercises.residual import check_basic_block_forward, check_option_a_shortcut

pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[dev]')")

from notebook_tools import exercise_cells, read, run_source, solution_blocks  # noqa: E402


# Every exercise of every notebook: {notebook: {exercise: (the name its cell defines, its check)}}.
# tests/test_exercises.py holds each to the contract (skeleton "not done", solution "passed"); the
# test_exercises_<topic>.py files plant the usual mistakes.
EXERCISES = {
    "01_autograd.ipynb": {"tanh": ("Tanh", check_tanh),
                          "topological_order": ("topological_order", check_topological_order)},
    "02_im2col_convolution.ipynb": {"im2col_loops": ("im2col_loops", check_im2col_loops),
                                    "window_view": ("window_view", check_window_view)},
    "03_batch_norm.ipynb": {"batch_norm_backward": ("batch_norm_backward", check_batch_norm_backward),
                            "running_stats": ("update_running_stats", check_running_stats)},
    "04_residual_block.ipynb": {"basic_block_forward": ("basic_block_forward", check_basic_block_forward),
                                "option_a_shortcut": ("option_a_shortcut", check_option_a_shortcut)},
    "10_training_recipe.ipynb": {"sgd_step": ("sgd_step", check_sgd_step)},
}


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
