"""Notebook 04's exercise checks (minires.exercises.residual) can fail, and pass only on a right answer.

Each check is run on the untouched skeleton taken from the notebook's exercise cell ("not done"),
on planted wrong solutions, each a usual mistake ("failed", with the hint naming it), and on the
reference solution from notebooks/solutions/04_residual_block.py ("passed").
"""
import numpy as np
import pytest

import minires.functional as F
from minires import Tensor
from minires.exercises import ExerciseFailed, todo
from minires.exercises.residual import check_basic_block_forward, check_option_a_shortcut
from notebook_tools import exercise_cells, read, run_source, solution_blocks

NOTEBOOK = "04_residual_block.ipynb"
CHECKS = {"basic_block_forward": check_basic_block_forward, "option_a_shortcut": check_option_a_shortcut}


@pytest.fixture(autouse=True)
def learner_mode(monkeypatch):
    monkeypatch.delenv("MINIRES_EXERCISES", raising=False)  # the learner's default: checks report, never raise


def define(source, name):
    """Run exercise source as the notebook would (its setup cell imported these) and return ``name``."""
    return run_source(source, {"np": np, "F": F, "Tensor": Tensor, "todo": todo})[name]


def test_the_notebook_has_exactly_these_exercises_and_solutions():
    assert set(exercise_cells(read(NOTEBOOK))) == set(CHECKS) == set(solution_blocks(NOTEBOOK))


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_untouched_skeleton_is_not_done(name):
    result = CHECKS[name](define(exercise_cells(read(NOTEBOOK))[name].source, name))
    assert result.status == "not done", result
    assert "not done yet" in str(result)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_reference_solution_passes(name):
    result = CHECKS[name](define(solution_blocks(NOTEBOOK)[name], name))
    assert result.status == "passed", result


BLOCK_MISTAKES = {
    "relu before the addition": ('''
def basic_block_forward(block, x):
    out = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    return block.relu(out) if block.plain else block.relu(out) + block.shortcut(x)
''', "before the addition"),
    "no final relu": ('''
def basic_block_forward(block, x):
    out = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    return out if block.plain else out + block.shortcut(x)
''', "final ReLU is missing"),
    "no relu between the convolutions": ('''
def basic_block_forward(block, x):
    out = block.bn2(block.conv2(block.bn1(block.conv1(x))))
    return block.relu(out if block.plain else out + block.shortcut(x))
''', "between the two convolutions"),
    "shortcut in a plain block": ('''
def basic_block_forward(block, x):
    out = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    return block.relu(out + block.shortcut(x))
''', "plain block"),
    "x instead of the shortcut": ('''
def basic_block_forward(block, x):
    out = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    return block.relu(out if block.plain else out + x)
''', "option A shortcut: your function raised ValueError: add: shapes (3, 8, 4, 4) and (3, 4, 7, 7)"),
    "shortcut detached from the graph": ('''
def basic_block_forward(block, x):
    out = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
    return block.relu(out if block.plain else out + Tensor(block.shortcut(x).numpy()))
''', "identity shortcut: gradient of x differs"),
    "graph broken through NumPy": ('''
def basic_block_forward(block, x):
    return Tensor(block(Tensor(x.numpy())).numpy())
''', "graph is broken"),
}


@pytest.mark.parametrize("mistake", sorted(BLOCK_MISTAKES))
def test_block_check_fails_on_planted_mistakes_and_names_them(mistake):
    source, expected_hint = BLOCK_MISTAKES[mistake]
    result = check_basic_block_forward(define(source, "basic_block_forward"))
    assert result.status == "failed", result
    assert expected_hint in result.message, result.message


SHORTCUT_MISTAKES = {
    "zero channels on the wrong side": ('''
def option_a_shortcut(x, out_channels, stride):
    return F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, out_channels - x.shape[1], 0))
''', "go *after* the input's channels"),
    "no subsampling": ('''
def option_a_shortcut(x, out_channels, stride):
    return F.pad(x, (0, 0, 0, 0, 0, out_channels - x.shape[1]))
''', "subsample first"),
    "padding H instead of C": ('''
def option_a_shortcut(x, out_channels, stride):
    return F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, out_channels - x.shape[1]))
''', "pad the channel dimension"),
    "subsampling from the second pixel": ('''
def option_a_shortcut(x, out_channels, stride):
    return F.pad(x[:, :, 1::stride, 1::stride], (0, 0, 0, 0, 0, out_channels - x.shape[1]))
''', "from the first pixel"),
    "graph broken through NumPy": ('''
def option_a_shortcut(x, out_channels, stride):
    y = x.numpy()[:, :, ::stride, ::stride]
    return Tensor(np.pad(y, ((0, 0), (0, out_channels - x.shape[1]), (0, 0), (0, 0))))
''', "graph is broken"),
}


@pytest.mark.parametrize("mistake", sorted(SHORTCUT_MISTAKES))
def test_shortcut_check_fails_on_planted_mistakes_and_names_them(mistake):
    source, expected_hint = SHORTCUT_MISTAKES[mistake]
    result = check_option_a_shortcut(define(source, "option_a_shortcut"))
    assert result.status == "failed", result
    assert expected_hint in result.message, result.message


def test_a_failing_check_says_where_it_is_wrong():
    source, _ = BLOCK_MISTAKES["relu before the addition"]
    message = check_basic_block_forward(define(source, "basic_block_forward")).message
    assert "BasicBlock(4, 4, stride=1), identity shortcut, training mode: output differs in" in message
    assert "worst at index" in message and "expected" in message and "got" in message


def test_solutions_mode_raises_instead_of_reporting(monkeypatch):
    monkeypatch.setenv("MINIRES_EXERCISES", "solutions")
    source, _ = SHORTCUT_MISTAKES["no subsampling"]
    with pytest.raises(ExerciseFailed, match="option A shortcut"):
        check_option_a_shortcut(define(source, "option_a_shortcut"))
