"""Notebook 03's exercises (the batch-norm backward, the running statistics): each check says
"failed" on planted wrong solutions, with the hint for that mistake, and passes right answers
written differently (the contract: tests/test_exercises.py)."""
import pytest

from exercise_tools import grade
from minires.exercises.batch_norm import check_batch_norm_backward, check_running_stats

# The staged backward of the notebook's table, with one line replaceable at a time.
STAGED = '''
def batch_norm_backward(dy, x, gamma, eps=1e-5):
    axes = (0, 2, 3)
    m = {m}
    g = gamma.reshape(1, -1, 1, 1)
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    var = (xc ** 2).mean(axis=axes, keepdims=True)
    inv_std = (var + eps) ** -0.5
    x_hat = xc * inv_std
    dbeta = {dbeta}
    dgamma = {dgamma}
    dx_hat = {dx_hat}
    d_inv_std = (dx_hat * xc).sum(axis=axes, keepdims=True)
    dvar = {dvar}
    dxc = {dxc}
    dmu = -dxc.sum(axis=axes, keepdims=True)
    dx = {dx}
    return dx, dgamma, dbeta
'''
RIGHT = dict(m="x.size // x.shape[1]", dbeta="dy.sum(axis=axes)", dgamma="(dy * x_hat).sum(axis=axes)",
             dx_hat="dy * g", dvar="d_inv_std * -0.5 * (var + eps) ** -1.5",
             dxc="dx_hat * inv_std + dvar * 2 * xc / m", dx="dxc + dmu / m")

WRONG_BACKWARD = [  # (changed lines, what the report must say)
    (dict(dx="dxc"), "path through the mean"),                                 # forgets the mean term
    (dict(dxc="dx_hat * inv_std"), "path through the variance"),
    (dict(dxc="dx_hat * inv_std", dx="dxc"), "eval mode"),
    (dict(dx_hat="dy"), "you forgot gamma"),
    (dict(dgamma="(dy * xc).sum(axis=axes)"), "not x - mu"),                   # dgamma with x - mu, not x_hat
    (dict(dbeta="dy.sum()"), "has shape ()"),                                  # summed over the channels too
    (dict(dx="dxc + dmu"), "walk the staged graph backwards"),                 # dmu without 1/m: generic hint
    (dict(dvar="d_inv_std * -0.5 * (var + eps) ** -0.5"), "exponent in dvar"),  # inv_std's power, not one lower
    (dict(dvar="d_inv_std * -0.5 * inv_std"), "exponent in dvar"),
    (dict(dvar="d_inv_std * -0.5 * (var + eps) ** 1.5"), "exponent in dvar"),   # the sign of the power lost
    (dict(dxc="dx_hat * inv_std + dvar * xc / m"), "factor 2 is lost"),
    (dict(m="x.shape[0]"), "not the batch size N = 4"),                          # N for m, in both 1/m
    (dict(dx="dxc + dmu / x.shape[0]"), "not the batch size N = 4"),
]


@pytest.mark.parametrize("change, says", WRONG_BACKWARD)
def test_wrong_backward_fails_with_its_hint(change, says):
    result = grade(STAGED.format(**{**RIGHT, **change}), "batch_norm_backward", check_batch_norm_backward)
    assert result.status == "failed", str(result)
    assert says in result.message, str(result)


def test_right_staged_backward_passes():
    assert grade(STAGED.format(**RIGHT), "batch_norm_backward", check_batch_norm_backward).passed


def test_compact_formula_passes():
    source = '''
def batch_norm_backward(dy, x, gamma, eps=1e-5):
    axes = (0, 2, 3)
    x_hat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    mean = lambda a: a.mean(axis=axes, keepdims=True)
    dx = gamma.reshape(1, -1, 1, 1) / np.sqrt(x.var(axis=axes, keepdims=True) + eps) * (
        dy - mean(dy) - x_hat * mean(dy * x_hat))
    return dx, (dy * x_hat).sum(axis=axes), dy.sum(axis=axes)
'''
    assert grade(source, "batch_norm_backward", check_batch_norm_backward).passed


def test_backward_returning_two_values_fails():
    source = STAGED.format(**RIGHT).replace("return dx, dgamma, dbeta", "return dx, dgamma")
    result = grade(source, "batch_norm_backward", check_batch_norm_backward)
    assert result.status == "failed" and "tuple (dx, dgamma, dbeta)" in result.message, str(result)
    assert "batch_norm_backward returned a tuple of 2 items" in result.message, str(result)


def test_backward_returning_nothing_is_told_so():
    source = STAGED.format(**RIGHT).replace("    return dx, dgamma, dbeta\n", "")
    result = grade(source, "batch_norm_backward", check_batch_norm_backward)
    assert result.status == "failed", str(result)
    assert "batch_norm_backward returned None; it must return a tuple (dx, dgamma, dbeta)" in result.message
    assert "without a return statement" in result.message, str(result)


RUNNING = '''
def update_running_stats(running_mean, running_var, x, momentum):
    axes = (0, 2, 3)
    m = x.size // x.shape[1]
    return ((1 - momentum) * running_mean + momentum * {mean},
            (1 - momentum) * running_var + momentum * {var})
'''


@pytest.mark.parametrize("mean, var, says", [
    ("x.mean(axis=axes)", "x.var(axis=axes)", "biased variance"),              # divides by m
    ("x.mean(axis=axes)", "x.var(axis=axes) * m / (m + 1)", "var * m / (m - 1)"),
    ("x.mean()", "x.var(axis=axes, ddof=1)", "running_mean"),                  # mean over all channels
    ("x.mean(axis=axes)", "x.var(axis=axes) * x.shape[0] / (x.shape[0] - 1)", "batch size N = 2 as m"),
])
def test_wrong_running_stats_fail_with_their_hint(mean, var, says):
    result = grade(RUNNING.format(mean=mean, var=var), "update_running_stats", check_running_stats)
    assert result.status == "failed", str(result)
    assert says in result.message, str(result)


# The update as F.batch_norm makes it: in place, without a return statement.
IN_PLACE = '''
def update_running_stats(running_mean, running_var, x, momentum):
    running_mean *= 1 - momentum
    running_mean += momentum * x.mean(axis=(0, 2, 3))
    running_var *= 1 - momentum
    running_var += momentum * x.var(axis=(0, 2, 3), ddof=1)
'''


def test_in_place_running_stats_pass():
    """Updating the arguments in place (as F.batch_norm does) and returning them is right too."""
    source = IN_PLACE + "    return running_mean, running_var\n"
    assert grade(source, "update_running_stats", check_running_stats).passed


def test_in_place_running_stats_returning_nothing_are_told_to_return_them():
    """As F.batch_norm does: right values, written in place, and no return statement."""
    result = grade(IN_PLACE, "update_running_stats", check_running_stats)
    assert result.status == "failed", str(result)
    assert "update_running_stats returned None; it must return a tuple (new_running_mean, new_running_var)" \
        in result.message, str(result)
    assert "in place" in result.message and "return running_mean, running_var" in result.message, str(result)
    assert "your code raised" not in result.message, str(result)  # no line of the check


def test_running_stats_returning_one_array_are_told_what_they_returned():
    result = grade(IN_PLACE + "    return running_var\n", "update_running_stats", check_running_stats)
    assert result.status == "failed", str(result)
    assert "update_running_stats returned an array of shape (3,); it must return a tuple" in result.message
