"""Notebook 04's exercise checks (minires.exercises.residual) can fail, and pass only on a right answer.

Each check is run on planted wrong solutions, each a usual mistake ("failed", with the hint naming
it); the skeleton and the reference solution are held to the contract in tests/test_exercises.py.
"""
import pytest

from minires.exercises import ExerciseFailed
from minires.exercises.residual import check_basic_block_forward, check_option_a_shortcut
from exercise_tools import learner_namespace
from notebook_tools import run_source


def define(source, name):
    """Run exercise source as the notebook would (its setup cell imported these) and return ``name``."""
    return run_source(source, learner_namespace())[name]


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


def test_a_block_forward_returning_nothing_is_told_so():
    source = """
def basic_block_forward(block, x):
    y = block.relu(block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x))))) + block.shortcut(x))
"""
    message = check_basic_block_forward(define(source, "basic_block_forward")).message
    assert "basic_block_forward returned None; it must return a minires Tensor" in message, message
    assert "without a return statement" in message, message


def test_a_shortcut_returning_an_array_is_told_so():
    source = """
def option_a_shortcut(x, out_channels, stride):
    return F.pad(x[:, :, ::stride, ::stride], (0, 0, 0, 0, 0, out_channels - x.shape[1])).numpy()
"""
    message = check_option_a_shortcut(define(source, "option_a_shortcut")).message
    assert "option_a_shortcut returned an array of shape (2, 6, 3, 3); it must return a minires Tensor" in message


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
