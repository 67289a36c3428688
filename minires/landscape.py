"""Loss landscapes: the loss along random directions in parameter space (Li et al., 2018).

"Visualizing the Loss Landscape of Neural Nets" plots a trained network's loss on a line or a
plane through its parameters ``θ*``::

    f(α)    = L(θ* + α·δ)                (a 1-D slice)
    f(α, β) = L(θ* + α·δ + β·η)          (a 2-D surface)

with ``δ`` and ``η`` random Gaussian directions, *filter-normalised* so that each filter of
the direction has the norm of the filter it moves (``filter_normalized_direction``). Without
that, the picture depends on the weights' scale, which batch norm makes meaningless: a
filter followed by BN computes the same function at any positive scale, so a step of fixed
size would be a big change for a small-norm filter and none for a large one.

A direction is a dict ``{parameter name: array}`` in the order of ``model.named_parameters()``,
shaped like the parameters and on their device. Typical use::

    origin = copy_parameters(model)                    # θ*, kept for the end
    d1 = filter_normalized_direction(model, rng=0)
    d2 = filter_normalized_direction(model, rng=1)
    alphas = np.linspace(-1, 1, 21)
    losses = loss_grid(model, x, y, [d1, d2], alphas, alphas)   # (21, 21); θ* is restored

``set_parameters_along(model, origin, [d1, d2], (a, b))`` moves the model to one point itself.
"""
import numbers

import numpy as np

from . import functional as F
from ._checks import as_generator, check_int
from .backend import device_of, get_array_module, to_device, to_numpy
from .engine import Tensor, no_grad

__all__ = ["copy_parameters", "filter_normalized_direction", "set_parameters_along", "loss_grid"]

_EPS = 1e-10  # Li et al.'s guard against a zero-norm random filter (which has probability 0)


def _named_parameters(func, model):
    if not hasattr(model, "named_parameters"):
        raise TypeError(f"{func}: model must be a minires.nn.Module, got {type(model).__name__}")
    params = dict(model.named_parameters())
    if not params:
        raise ValueError(f"{func}: the model has no parameters")
    return params


def copy_parameters(model):
    """``{name: copy of the parameter's array}``: the point ``θ*`` to move around and come back to."""
    return {name: p.data.copy() for name, p in _named_parameters("copy_parameters", model).items()}


def filter_normalized_direction(model, rng=None):
    r"""A random direction ``d`` around ``model``'s parameters, normalised filter by filter.

    For every weight with two or more dimensions (a conv weight ``(out, in, kh, kw)``, a
    linear weight ``(out, in)``), ``d`` is drawn from N(0, 1) elementwise, then each filter
    ``i`` (index ``i`` along dimension 0, one output channel) is rescaled to the norm of the
    weights' filter::

        d_i  <-  d_i · ||θ_i|| / (||d_i|| + 1e-10)

    For one-dimensional parameters (batch-norm ``weight``/``bias``, layer biases), ``d = 0``:
    they stay where they are, as in the paper (its ``ignore='biasbn'`` setting).

    ``rng`` is a ``numpy.random.Generator`` or a seed. The numbers are drawn on the CPU in
    float64, so a seed gives the same direction on NumPy and CuPy; each array is then cast to
    its parameter's dtype and put on its device. Returns ``{name: array}``.
    """
    func = "filter_normalized_direction"
    params = _named_parameters(func, model)
    rng = as_generator(rng, func, name="rng")
    direction = {}
    for name, p in params.items():
        xp = get_array_module(p.data)
        if p.data.ndim <= 1:
            direction[name] = xp.zeros_like(p.data)
            continue
        w = to_numpy(p.data).astype(np.float64).reshape(p.data.shape[0], -1)
        d = rng.standard_normal(w.shape)
        d *= (np.linalg.norm(w, axis=1) / (np.linalg.norm(d, axis=1) + _EPS))[:, None]
        direction[name] = to_device(d.reshape(p.data.shape).astype(p.data.dtype), device_of(p.data))
    return direction


def _check_directions(func, params, directions):
    """Each direction is a dict with exactly the model's parameter names, shapes and devices."""
    if not isinstance(directions, (list, tuple)) or not 1 <= len(directions) <= 2:
        raise TypeError(f"{func}: directions must be a list of one or two direction dicts "
                        f"(from filter_normalized_direction), got {type(directions).__name__}"
                        + (f" of length {len(directions)}" if isinstance(directions, (list, tuple)) else ""))
    for k, d in enumerate(directions):
        if not isinstance(d, dict):
            raise TypeError(f"{func}: directions[{k}] must be a dict {{name: array}}, got {type(d).__name__}")
        if set(d) != set(params):
            missing, extra = sorted(set(params) - set(d)), sorted(set(d) - set(params))
            raise ValueError(f"{func}: directions[{k}] does not match the model's parameters "
                             f"(missing {missing[:3]}, unexpected {extra[:3]})")
        for name, p in params.items():
            a = d[name]
            if getattr(a, "shape", None) != p.data.shape:
                raise ValueError(f"{func}: directions[{k}][{name!r}] has shape {getattr(a, 'shape', None)}, "
                                 f"the parameter has shape {p.data.shape}")
            if device_of(a) != device_of(p.data):
                raise ValueError(f"{func}: directions[{k}][{name!r}] is on {device_of(a)}, "
                                 f"the parameter on {device_of(p.data)}")


def _check_origin(func, params, origin):
    if not isinstance(origin, dict) or set(origin) != set(params):
        raise ValueError(f"{func}: origin must be the dict copy_parameters(model) returns, "
                         f"with the model's {len(params)} parameter names")
    for name, p in params.items():
        if getattr(origin[name], "shape", None) != p.data.shape:
            raise ValueError(f"{func}: origin[{name!r}] has shape {getattr(origin[name], 'shape', None)}, "
                             f"the parameter has shape {p.data.shape}")


def _check_coordinate(func, what, c):
    if isinstance(c, bool) or not isinstance(c, numbers.Real) or not np.isfinite(c):
        raise ValueError(f"{func}: {what} must be a finite real number, got {c!r}")
    return float(c)


def set_parameters_along(model, origin, directions, coords):
    """Move ``model`` to ``θ = origin + Σ_k coords[k]·directions[k]``, in place.

    ``origin`` is from ``copy_parameters(model)``; ``directions`` a list of one or two
    direction dicts; ``coords`` one number per direction. The point is always computed from
    ``origin`` (never by adding steps to the current weights), and a zero coordinate adds
    nothing, so ``coords = (0, 0)`` restores ``origin`` bit for bit. The parameters' arrays
    are written in place (an optimizer holding them is not disturbed).
    """
    func = "set_parameters_along"
    params = _named_parameters(func, model)
    _check_origin(func, params, origin)
    _check_directions(func, params, directions)
    if not isinstance(coords, (list, tuple, np.ndarray)) or len(coords) != len(directions):
        raise ValueError(f"{func}: coords must hold one number per direction ({len(directions)}), got {coords!r}")
    coords = [_check_coordinate(func, f"coords[{k}]", c) for k, c in enumerate(coords)]
    for name, p in params.items():
        p.data[...] = origin[name]
        for c, d in zip(coords, directions):
            if c != 0.0:
                p.data += p.data.dtype.type(c) * d[name]  # in the parameter's dtype: no float64 copy


def _check_grid_axis(func, name, values):
    a = np.asarray(values, dtype=np.float64) if not isinstance(values, (str, bytes)) else None
    if a is None or a.ndim != 1 or a.size == 0:
        raise ValueError(f"{func}: {name} must be a non-empty 1-D sequence of numbers, got "
                         f"{'shape ' + str(a.shape) if a is not None else repr(values)}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{func}: {name} must be finite, got {a}")
    return a


def loss_grid(model, x, y, directions, alphas, betas=None, *, batch_size=256):
    """The mean cross-entropy of ``model`` on ``(x, y)`` at every point of a line or a grid.

    One direction ``[d]``: returns ``losses`` of shape ``(len(alphas),)`` with
    ``losses[i] = L(θ* + alphas[i]·d)``. Two directions ``[d1, d2]`` (``betas`` required):
    shape ``(len(alphas), len(betas))`` with ``losses[i, j] = L(θ* + alphas[i]·d1 + betas[j]·d2)``
    (``plt.contour(alphas, betas, losses.T)`` draws it).

    ``L`` is the mean cross-entropy over all N samples, computed in mini-batches of
    ``batch_size`` with the model in eval mode (batch norm uses its running statistics, so a
    point's loss does not depend on how the data is batched) and without recording a graph.
    ``x`` is an array ``(N, C, H, W)`` (or a Tensor) on the model's device, ``y`` integer labels
    ``(N,)``. Afterwards the parameters are back at ``θ*`` bit for bit and the model in its
    former mode, even if an error interrupts the loop. Returns float64 NumPy losses.
    """
    func = "loss_grid"
    params = _named_parameters(func, model)
    _check_directions(func, params, directions)
    alphas = _check_grid_axis(func, "alphas", alphas)
    if len(directions) == 2:
        if betas is None:
            raise ValueError(f"{func}: two directions need betas (the coordinates along the second)")
        betas = _check_grid_axis(func, "betas", betas)
    elif betas is not None:
        raise ValueError(f"{func}: betas given but only one direction; pass [d1, d2] for a 2-D grid")
    batch_size = check_int(func, "batch_size", batch_size, minimum=1)
    x = x.data if isinstance(x, Tensor) else x
    y = y.data if isinstance(y, Tensor) else y
    if getattr(x, "ndim", None) != 4 or x.shape[0] == 0:
        raise ValueError(f"{func}: x must be a non-empty array (N, C, H, W), got shape {getattr(x, 'shape', None)}")
    if getattr(y, "shape", None) != (x.shape[0],):
        raise ValueError(f"{func}: y must have shape ({x.shape[0]},) for x of shape {x.shape}, "
                         f"got {getattr(y, 'shape', None)}")
    device = device_of(next(iter(params.values())).data)
    if device_of(x) != device or device_of(y) != device:
        raise ValueError(f"{func}: x is on {device_of(x)} and y on {device_of(y)}, the model on {device}")

    origin = copy_parameters(model)
    was_training = model.training
    points = [(a,) for a in alphas] if betas is None else [(a, b) for a in alphas for b in betas]
    losses = np.empty(len(points))
    model.eval()
    try:
        with no_grad():
            for k, point in enumerate(points):
                set_parameters_along(model, origin, list(directions), point)
                total = 0.0
                for start in range(0, x.shape[0], batch_size):
                    xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                    total += float(F.cross_entropy(model(Tensor(xb)), yb, reduction="sum").item())
                losses[k] = total / x.shape[0]
    finally:
        set_parameters_along(model, origin, list(directions), (0.0,) * len(directions))
        model.train(was_training)
    return losses if betas is None else losses.reshape(len(alphas), len(betas))
