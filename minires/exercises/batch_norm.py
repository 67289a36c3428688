"""Checks for notebook 03 (batch normalization): the backward pass and the running statistics.

``check_batch_norm_backward(batch_norm_backward)``: the learner's
``batch_norm_backward(dy, x, gamma, eps) -> (dx, dgamma, dbeta)`` (training mode, statistics over
N, H, W per channel) must match the gradients of ``F.batch_norm`` for a random upstream gradient.

``check_running_stats(update_running_stats)``: the learner's
``update_running_stats(running_mean, running_var, x, momentum) -> (new_mean, new_var)`` must match
what ``F.batch_norm`` writes into its running statistics in training mode (the unbiased variance).
"""
import numpy as np

from .. import functional as F
from ..engine import Tensor
from .check import check, compare, matches, name_of, unpack

AXES = (0, 2, 3)  # a channel's statistics run over the batch and both spatial axes


def _batch(rng, shape=(4, 3, 3, 3)):
    """float64 x whose channels have different means and scales, gamma, beta and dy."""
    c = shape[1]
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3.0, c)[None, :, None, None] \
        + rng.uniform(-2.0, 2.0, c)[None, :, None, None]
    return x, rng.uniform(0.5, 2.0, c), rng.standard_normal(c), rng.standard_normal(shape)


def _expected_grads(x, gamma, beta, dy, eps):
    xt, gt, bt = (Tensor(a.copy(), requires_grad=True) for a in (x, gamma, beta))
    F.batch_norm(xt, None, None, gt, bt, training=True, eps=eps).backward(dy)
    return xt.grad, gt.grad, bt.grad


def _staged_dx(dy, x, gamma, eps, power=-1.5, two=2, m_var=None, m_mean=None):
    """dx by the notebook's staged backward, with the knobs that its usual mistakes turn: the
    exponent in dvar (right: -3/2), the factor 2 of d(xc**2), and the count m of each mean
    (right: N*H*W)."""
    m = x.size // x.shape[1]
    m_var, m_mean = m_var or m, m_mean or m
    mu = x.mean(axis=AXES, keepdims=True)
    xc = x - mu
    var = (xc ** 2).mean(axis=AXES, keepdims=True)
    inv_std = (var + eps) ** -0.5
    dx_hat = dy * gamma[None, :, None, None]
    dvar = (dx_hat * xc).sum(axis=AXES, keepdims=True) * -0.5 * (var + eps) ** power
    dxc = dx_hat * inv_std + dvar * two * xc / m_var
    return dxc - dxc.sum(axis=AXES, keepdims=True) / m_mean


def _dx_hint(got, x, gamma, dy, eps):
    """The hint for a wrong dx, recognised among the usual mistakes."""
    mean = lambda a: a.mean(axis=AXES, keepdims=True)  # noqa: E731
    inv_std = 1 / np.sqrt(x.var(axis=AXES, keepdims=True) + eps)
    x_hat = (x - mean(x)) * inv_std
    g = gamma[None, :, None, None]
    n, m = x.shape[0], x.size // x.shape[1]
    staged = lambda **mistake: _staged_dx(dy, x, gamma, eps, **mistake)  # noqa: E731
    exponent = ("the exponent in dvar is wrong: d(var + eps)**(-1/2) / dvar = -1/2 * (var + eps)**(-3/2), so "
                "dvar = d_inv_std * -0.5 * (var + eps) ** -1.5 (one power lower than inv_std's -0.5)")
    count = (f"m counts a channel's values over N, H and W: m = x.size // C = {m} here, not the batch size "
             f"N = {n}; both 1/m (through var and through mu) use it")
    usual = [
        (staged(power=-0.5), exponent),
        (staged(power=1.5), exponent),
        (staged(power=0.5), exponent),
        (staged(two=1), "the factor 2 is lost: d(xc**2)/dxc = 2 * xc, so the path through var gives "
                        "dxc += dvar * 2 * xc / m"),
        (staged(m_var=n, m_mean=n), count),
        (staged(m_var=n), count),
        (staged(m_mean=n), count),
        (g * inv_std * (dy - x_hat * mean(dy * x_hat)),
         "you forgot the path through the mean, stage (1): mu depends on every x of the channel, so x also "
         "receives dmu / m, with dmu = -sum(dxc) (in the compact formula, the '- mean(dy)' term)"),
        (g * inv_std * (dy - mean(dy)),
         "you forgot the path through the variance, stage (3): var depends on every xc of the channel, so xc "
         "also receives 2/m * xc * dvar (in the compact formula, the '- x_hat * mean(dy * x_hat)' term)"),
        (g * inv_std * dy,
         "you treated mean and var as constants (that is eval mode's gradient); in training mode both "
         "depend on every x of the channel"),
        (inv_std * (dy - mean(dy) - x_hat * mean(dy * x_hat)),
         "you forgot gamma: y = gamma * x_hat + beta, so dx_hat = gamma * dy"),
    ]
    for candidate, hint in usual:
        if matches(got, candidate):
            return hint
    return ("walk the staged graph backwards, one line per forward line: dx_hat, then d_inv_std and dvar, "
            "then dxc (two paths: direct and through var), then dmu and dx (two paths: direct and through mu)")


def check_batch_norm_backward(batch_norm_backward):
    """Check ``batch_norm_backward(dy, x, gamma, eps) -> (dx, dgamma, dbeta)`` against ``F.batch_norm``.

    float64 inputs of shape (4, 3, 3, 3) (channels with different means and scales) and a random
    upstream gradient (a constant one would hide a missing mean term: notebook 01). dbeta, dgamma
    and dx are compared in that order; a wrong dx is matched against the usual mistakes (no mean
    term, no variance term, both, no gamma, the exponent in dvar, a lost factor 2, the batch
    size N for m) to name the one made.
    """
    def run():
        rng = np.random.default_rng(0)
        eps = 1e-5
        x, gamma, beta, dy = _batch(rng)
        dx_ref, dgamma_ref, dbeta_ref = _expected_grads(x, gamma, beta, dy, eps)
        result = batch_norm_backward(dy.copy(), x.copy(), gamma.copy(), eps)
        dx, dgamma, dbeta = unpack(name_of(batch_norm_backward), result, ("dx", "dgamma", "dbeta"))
        compare("dbeta (shape (C,))", dbeta, dbeta_ref,
                hint="dbeta = sum of dy over N, H, W (axis=(0, 2, 3)), one number per channel")
        compare("dgamma (shape (C,))", dgamma, dgamma_ref,
                hint="dgamma = sum of dy * x_hat over N, H, W, with x_hat the normalised x (not x - mu)")
        compare("dx (shape (N, C, H, W))", dx, dx_ref, hint=_dx_hint(dx, x, gamma, dy, eps))
        return "dx, dgamma and dbeta match F.batch_norm's backward"

    return check("batch_norm_backward", run)


def check_running_stats(update_running_stats):
    """Check ``update_running_stats(running_mean, running_var, x, momentum) -> (mean, var)``.

    Two updates in a row (momentum 0.1, then 0.5) on float64 batches with m = 2*2*2 = 8 values per
    channel, small enough that the biased variance is 12 % off, against the running statistics
    that ``F.batch_norm`` leaves in training mode.
    """
    def run():
        rng = np.random.default_rng(0)
        rm, rv = np.zeros(3), np.ones(3)
        name = name_of(update_running_stats)
        for step, momentum in enumerate((0.1, 0.5)):
            x = _batch(rng, (2, 3, 2, 2))[0]
            ref_m, ref_v = rm.copy(), rv.copy()
            F.batch_norm(Tensor(x), ref_m, ref_v, training=True, momentum=momentum)
            arg_m, arg_v = rm.copy(), rv.copy()
            result = update_running_stats(arg_m, arg_v, x.copy(), momentum)
            in_place = result is None and not (np.array_equal(arg_m, rm) and np.array_equal(arg_v, rv))
            got_m, got_v = unpack(name, result, ("new_running_mean", "new_running_var"), hint=(
                f"you updated running_mean and running_var in place (as F.batch_norm does): fine, but {name} "
                "must also return them: end it with return running_mean, running_var") if in_place else "")
            what = f"update {step + 1} (momentum {momentum}, m = 8 values per channel)"
            compare(f"running_mean after {what}", got_m, ref_m,
                    hint="new = (1 - momentum) * running_mean + momentum * (mean of x over N, H, W)")
            n, m = x.shape[0], x.size // x.shape[1]
            biased = ("you used the biased variance (divided by m); the running variance estimates the data's "
                      "variance, so it takes the unbiased one, var * m / (m - 1)")
            batch_size = (f"you used the batch size N = {n} as m; m counts a channel's values over N, H and W: "
                          f"m = x.size // C = {m} here, so the unbiased variance is var * m / (m - 1)")
            usual = [(x.var(axis=AXES), biased), (x.var(axis=AXES) * n / (n - 1), batch_size)]
            hint = next((h for var, h in usual if matches(got_v, (1 - momentum) * rv + momentum * var, 1e-5, 1e-8)),
                        f"new = (1 - momentum) * running_var + momentum * var * m / (m - 1), here m = {m}")
            compare(f"running_var after {what}", got_v, ref_v, hint=hint)
            rm, rv = ref_m, ref_v
        return "matches F.batch_norm's running statistics (unbiased variance) over two updates"

    return check("running_stats", run)
