"""The exercise of notebook 10 (the SGD step): its check says "not done" on the skeleton taken from
the notebook, "failed" on planted wrong solutions (with the hint for that mistake), "passed" on the
reference solution in notebooks/solutions/10_training_recipe.py."""
import pytest

from minires.exercises import ExerciseFailed
from minires.exercises.recipe import check_sgd_step
from notebook_tools import exercise_cells, read, run_source, solution_blocks

NOTEBOOK = "10_training_recipe.ipynb"

# Planted mistakes: (source, a phrase of the hint the check must give)
WRONG = {
    "decay after momentum": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    v = momentum * v + grad
    return w - lr * (v + weight_decay * w), v
""", "*before* the momentum buffer"),
    "Sutskever's form": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    v = momentum * v + lr * (grad + weight_decay * w)
    return w - v, v
""", "Sutskever"),
    "dampened average": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    g = grad + weight_decay * w
    v = momentum * v + (1 - momentum) * g
    return w - lr * v, v
""", "dampening"),
    "no weight decay": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    v = momentum * v + grad
    return w - lr * v, v
""", "weight decay is missing"),
    "Nesterov": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    g = grad + weight_decay * w
    v = momentum * v + g
    return w - lr * (g + momentum * v), v
""", "Nesterov"),
    "returns only w": ("""
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    g = grad + weight_decay * w
    v = momentum * v + g
    return w - lr * v
""", "must return a tuple"),
}


@pytest.fixture(autouse=True)
def learner_mode(monkeypatch):
    monkeypatch.delenv("MINIRES_EXERCISES", raising=False)  # results are returned, not raised


def test_the_notebook_has_the_exercise_and_its_solution():
    assert set(exercise_cells(read(NOTEBOOK))) == {"sgd_step"} == set(solution_blocks(NOTEBOOK))


def test_skeleton_is_not_done():
    skeleton = exercise_cells(read(NOTEBOOK))["sgd_step"].source
    result = check_sgd_step(run_source(skeleton)["sgd_step"])
    assert result.status == "not done", result


@pytest.mark.parametrize("mistake", sorted(WRONG))
def test_planted_mistake_fails_with_its_hint(mistake):
    source, hint = WRONG[mistake]
    result = check_sgd_step(run_source(source)["sgd_step"])
    assert result.status == "failed", result
    assert hint in result.message, result.message


def test_sutskever_is_caught_in_the_weights_too():
    """Sutskever's steps equal PyTorch's while lr is constant; with the buffer left out of the
    comparison, the weights still differ after the check's first lr drop (step 4)."""
    source = """
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    g = grad + weight_decay * w
    u = momentum * lr_before[0] * v + lr * g   # Sutskever's velocity (u = lr * v while lr is constant)
    lr_before[0] = lr
    return w - u, momentum * v + g             # the buffer PyTorch's way: only the weights can differ
lr_before = [0.0]
"""
    result = check_sgd_step(run_source(source)["sgd_step"])
    assert result.status == "failed" and "step 4" in result.message and "weights" in result.message, result


def test_solution_passes():
    result = check_sgd_step(run_source(solution_blocks(NOTEBOOK)["sgd_step"])["sgd_step"])
    assert result.status == "passed", result
    assert "bit for bit" in result.message


def test_solutions_mode_raises_on_a_wrong_solution(monkeypatch):
    monkeypatch.setenv("MINIRES_EXERCISES", "solutions")
    with pytest.raises(ExerciseFailed, match="sgd_step"):
        check_sgd_step(run_source(WRONG["decay after momentum"][0])["sgd_step"])
