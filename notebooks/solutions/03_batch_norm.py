# Reference solutions for the exercises of notebooks/03_batch_norm.ipynb.
# Each block below replaces the exercise cell of the same name (tests/notebook_tools.py);
# it runs after the notebook's earlier cells, so it uses their imports (np, ...).
# Try the exercise first: the check cell under it tells you what is wrong, and where.

# %% exercise: batch_norm_backward
def batch_norm_backward(dy, x, gamma, eps=1e-5):
    """Training-mode BN backward, one line per stage of the graph, last stage first.

    dy, x: (N, C, H, W); gamma: (C,). Returns dx (N, C, H, W), dgamma (C,), dbeta (C,).
    """
    axes = (0, 2, 3)
    m = x.size // x.shape[1]
    g = gamma.reshape(1, -1, 1, 1)
    # forward, staged (as in the graph above)
    mu = x.mean(axis=axes, keepdims=True)
    xc = x - mu
    var = (xc ** 2).mean(axis=axes, keepdims=True)
    inv_std = (var + eps) ** -0.5
    x_hat = xc * inv_std
    # backward, stage by stage
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * x_hat).sum(axis=axes)
    dx_hat = dy * g
    d_inv_std = (dx_hat * xc).sum(axis=axes, keepdims=True)
    dvar = d_inv_std * -0.5 * (var + eps) ** -1.5
    dxc = dx_hat * inv_std + dvar * 2 * xc / m   # xc feeds x_hat directly and through var
    dmu = -dxc.sum(axis=axes, keepdims=True)
    dx = dxc + dmu / m                           # x feeds xc directly and through mu
    return dx, dgamma, dbeta

# %% exercise: running_stats
def update_running_stats(running_mean, running_var, x, momentum):
    """One training step's update of BN's running statistics; returns (new_mean, new_var), each (C,)."""
    axes = (0, 2, 3)
    m = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var_unbiased = x.var(axis=axes) * m / (m - 1)  # = x.var(axis=axes, ddof=1)
    return ((1 - momentum) * running_mean + momentum * mean,
            (1 - momentum) * running_var + momentum * var_unbiased)
