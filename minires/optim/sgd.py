"""``SGD``: stochastic gradient descent with momentum, exactly as ``torch.optim.SGD``.

The paper (Sec. 4.2) trains its CIFAR-10 ResNets with SGD, momentum 0.9, weight decay 1e-4
and mini-batches of 128 (the learning rate and its schedule: ``lr_scheduler.py``).

``SGD`` follows ``torch.optim.SGD`` exactly: same formulas, same order of operations, same
first-step rule for the momentum buffer, same ``param_groups`` and ``state_dict`` layout. So a
PyTorch user's hyper-parameters mean the same thing here. Its ``state_dict()`` is made of
Python numbers, lists, dicts and NumPy arrays; ``minires.checkpoint`` writes it to disk.
"""
import numpy as np

from .._checks import check_real
from ..backend import device_of, to_device, to_numpy
from ..engine import is_reference
from .. import gpu_kernels

__all__ = ["SGD"]


def _check_sgd_hyperparameters(group, where):
    """Validate (and normalize to Python floats/bools) one param group's hyper-parameters.

    The rules are PyTorch's: lr, momentum and weight_decay must be >= 0, and Nesterov momentum
    needs a positive momentum and no dampening (its look-ahead formula assumes both).
    """
    group["lr"] = check_real(where, "lr", group["lr"], minimum=0.0)
    group["momentum"] = check_real(where, "momentum", group["momentum"], minimum=0.0)
    # PyTorch does not restrict dampening, so neither do we (beyond being a finite number).
    group["dampening"] = check_real(where, "dampening", group["dampening"])
    group["weight_decay"] = check_real(where, "weight_decay", group["weight_decay"], minimum=0.0)
    if not isinstance(group["nesterov"], (bool, np.bool_)):
        raise TypeError(f"{where}: nesterov must be True or False, got {group['nesterov']!r}")
    group["nesterov"] = bool(group["nesterov"])
    if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
        raise ValueError(
            f"{where}: Nesterov momentum requires momentum > 0 and dampening == 0, got "
            f"momentum={group['momentum']!r}, dampening={group['dampening']!r}"
        )


def _describe(x):
    """Shape, dtype and device of an array, for error messages."""
    return f"shape {tuple(x.shape)}, dtype {x.dtype}, device {device_of(x)}"


_HYPERPARAMETERS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")


class SGD:
    r"""Stochastic gradient descent with momentum, exactly as ``torch.optim.SGD``.

    ``SGD(params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False)``

    ``params`` is an iterable of parameters (objects with ``.data`` and ``.grad`` arrays, such
    as a ``Tensor`` with ``requires_grad=True``; ``model.parameters()`` works), or a list of
    *param groups*: dicts ``{"params": [...], "lr": ..., "weight_decay": ...}`` whose missing
    hyper-parameters default to the keyword arguments. Groups let some parameters (e.g. the
    BatchNorm scales and shifts) use other settings; the paper itself decays all of them.

    For every parameter ``p`` whose gradient ``g = p.grad`` is not None, with learning rate
    ``lr``, momentum ``μ``, dampening ``τ`` and weight decay ``λ`` of its group, ``step()`` does::

        g ← g + λ·p                          (L2 weight decay; only if λ ≠ 0)
        if μ ≠ 0:
            b ← g                    on the first step (a copy of g: no dampening yet)
            b ← μ·b + (1 − τ)·g      on later steps
            g ← g + μ·b              if nesterov
            g ← b                    otherwise
        p ← p − lr·g

    ``b`` is the parameter's *momentum buffer* (``opt.state[i]["momentum_buffer"]``, ``i`` its
    index over all groups). Parameters whose ``.grad`` is None are skipped entirely and get no
    buffer, as in PyTorch.

    Why this form of momentum (and not ``v ← μ·v + lr·g; p ← p − v`` of Sutskever et al.):
    it is PyTorch's, and since ``lr`` multiplies the *whole* step, a schedule that divides
    ``lr`` by 10 takes effect at once instead of fading in as old velocity decays.

    The update is done in place on the backend arrays (NumPy or CuPy), in the parameter's own
    dtype: float32 stays float32 (hyper-parameters are cast to the array's dtype first, so no
    float64 temporary appears). Momentum buffers live on the parameter's device. On the GPU
    the whole update of a parameter is one fused CuPy kernel (``gpu_kernels.sgd_update``) instead of
    six to eight array operations: same formulas, one launch.

    Results agree with PyTorch to float32 rounding, not always to the last bit: PyTorch's
    kernels fuse ``a + α·b`` into one multiply-add (a single rounding), while NumPy rounds the
    product and the sum separately, so a step can differ by one unit in the last place. (Our
    GPU kernel may fuse them too: CUDA compilers contract ``a·b + c`` by default; so the GPU
    and CPU updates can differ in the same way.)

    ``opt.param_groups[k]["lr"]`` may be read and written between steps; that is how the
    learning-rate schedules below act.
    """

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        self.defaults = dict(
            lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
            nesterov=nesterov,
        )
        _check_sgd_hyperparameters(self.defaults, "SGD")
        self.param_groups = []
        # Per-parameter state, keyed by the parameter's index over all groups (the numbering
        # state_dict() uses). PyTorch keys it by the tensor itself; an index is simpler here
        # and needs nothing from the parameter class (no hashing).
        self.state = {}
        for group in _as_param_groups(params):
            self.add_param_group(group)

    # --- parameters --------------------------------------------------------------------

    def add_param_group(self, param_group):
        """Append a group ``{"params": [...], <hyper-parameter>: value, ...}`` (as PyTorch's).

        Missing hyper-parameters take the constructor's values. Extra keys are kept (useful
        for notes such as ``"name": "no_decay"``) and travel in ``state_dict()``.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"SGD.add_param_group: expected a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError("SGD.add_param_group: the group has no 'params' entry")
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if _is_parameter(params) else _param_list(params, "SGD")
        for name, value in self.defaults.items():
            group.setdefault(name, value)
        where = f"SGD param group {len(self.param_groups)}"
        _check_sgd_hyperparameters(group, where)

        start = sum(len(g["params"]) for g in self.param_groups)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for k, p in enumerate(group["params"]):
            _check_parameter(p, f"{where}: parameter {start + k}")
            # A parameter listed twice would be updated twice per step.
            if id(p) in seen:
                raise ValueError(
                    f"{where}: parameter {start + k} appears more than once in the optimizer's "
                    "parameters (each parameter may belong to one group, once)"
                )
            seen.add(id(p))
        self.param_groups.append(group)

    def _indexed_params(self):
        """Yield ``(index, group, param)`` for every parameter, numbered across groups."""
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield index, group, p
                index += 1

    # --- the update --------------------------------------------------------------------

    def zero_grad(self, set_to_none=True):
        """Clear the gradients: ``.grad = None`` (default, as PyTorch), or zero them in place."""
        for _, _, p in self._indexed_params():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0  # in place: keeps the array (and its memory) for the next backward

    def step(self, closure=None):
        """One SGD update of every parameter that has a gradient (formulas in the class doc).

        ``closure`` (optional, as PyTorch): a function that recomputes the loss (doing its own
        ``zero_grad``/``backward``); it is called first and its result is returned.
        """
        loss = closure() if closure is not None else None
        for index, group, p in self._indexed_params():
            if p.grad is None:
                continue
            _check_grad(index, p)
            state = self.state.setdefault(index, {}) if group["momentum"] != 0 else {}
            buf = state.get("momentum_buffer")
            if buf is not None:
                _check_buffer(index, p.data, buf)
            # CuPy data: the same update as one fused kernel (the reference switch keeps the NumPy form)
            update = gpu_kernels.sgd_update if device_of(p.data) == "gpu" and not is_reference() else sgd_update
            buf = update(p.data, p.grad, buf, group["lr"], group["momentum"], group["dampening"],
                         group["weight_decay"], group["nesterov"])
            if buf is not None:
                state["momentum_buffer"] = buf
        return loss

    # --- checkpoints -------------------------------------------------------------------

    def state_dict(self):
        """The optimizer's state as plain data, in PyTorch's layout::

            {"state": {index: {"momentum_buffer": ndarray}, ...},
             "param_groups": [{"lr": 0.1, "momentum": 0.9, ..., "params": [0, 1, ...]}, ...]}

        Parameters are numbered across groups in order. Buffers are NumPy copies (fetched from
        the GPU when needed), so the dict can be saved (``minires.checkpoint.flatten_state``) and is not
        changed by later steps. Parameters without a buffer (never had a gradient, or momentum
        is 0) have no entry in ``"state"``.
        """
        param_groups, start = [], 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = list(range(start, start + len(group["params"])))
            start += len(group["params"])
            param_groups.append(packed)
        state = {
            index: {name: to_numpy(value).copy() for name, value in entry.items()}
            for index, entry in sorted(self.state.items())
        }
        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and momentum buffers saved by ``state_dict()``.

        The optimizer must have the same number of groups, of the same sizes, as the one that
        was saved (as PyTorch requires); saved parameter ``i`` maps to this optimizer's
        parameter at the same position. Hyper-parameters (lr included) are taken from the
        saved groups. Buffers are copied onto each parameter's device and cast to its dtype;
        their shapes must match. Nothing is changed unless everything checks out.
        """
        where = "SGD.load_state_dict"
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{where}: expected a dict with keys 'state' and 'param_groups', got {keys}")
        groups, param_of = self._saved_groups(list(state_dict["param_groups"]), where)
        position = {id(p): i for i, _, p in self._indexed_params()}
        state = {}
        for saved_index, entry in dict(state_dict["state"]).items():
            p = param_of.get(saved_index) if isinstance(saved_index, int) else None
            if p is None:
                raise ValueError(f"{where}: the saved state has an entry for parameter {saved_index!r}, "
                                 "which is in none of the saved param groups")
            state[position[id(p)]] = _restored_entry(entry, p, saved_index, where)
        # Update the group dicts in place, so references to them (a schedule's) stay valid.
        for group, new_group in zip(self.param_groups, groups):
            group.clear()
            group.update(new_group)
        self.state = state

    def _saved_groups(self, saved_groups, where):
        """The saved groups, checked, holding this optimizer's parameters; and a map from the
        saved parameter indices to those parameters."""
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{where}: the saved state has {len(saved_groups)} param groups, this "
                             f"optimizer has {len(self.param_groups)}")
        groups, param_of = [], {}
        for k, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{where}: saved param group {k} has {len(saved['params'])} parameters, "
                                 f"this optimizer's group {k} has {len(group['params'])}")
            missing = [name for name in _HYPERPARAMETERS if name not in saved]
            if missing:
                raise ValueError(f"{where}: saved param group {k} lacks {missing}")
            new_group = {key: value for key, value in saved.items() if key != "params"}
            _check_sgd_hyperparameters(new_group, f"{where}: saved param group {k}")
            new_group["params"] = group["params"]
            groups.append(new_group)
            param_of.update(zip((int(i) for i in saved["params"]), group["params"]))
        return groups, param_of

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {k}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


def sgd_update(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov):
    """The update of one parameter array, in place (``SGD``'s docstring); returns the momentum
    buffer (``buf`` updated in place, a new one on the first step when ``buf`` is None, None
    without momentum). ``grad`` itself is never modified. ``gpu_kernels.sgd_update`` is the same
    update fused into one CuPy kernel.
    """
    # Cast the hyper-parameters to the array's dtype: float32 · float32 stays float32,
    # and an np.float64 lr (a schedule may compute one) cannot promote the update.
    cast = param.dtype.type
    lr = cast(lr)
    d_p = grad       # the step direction; `owned` tells whether we may overwrite it
    owned = False
    if weight_decay != 0:
        d_p = param * cast(weight_decay)   # λ·p, a new array ...
        d_p += grad                         # ... plus g: PyTorch's grad.add(p, alpha=λ)
        owned = True

    if momentum != 0:
        if buf is None:
            # First step: b = g, no dampening (PyTorch's rule). A weight-decayed d_p is
            # already a fresh array, so it becomes the buffer without a copy; it is then
            # no longer ours to overwrite.
            buf = d_p if owned else d_p.copy()
        else:
            buf *= cast(momentum)
            if dampening == 0:
                buf += d_p                           # (1 − 0)·g = g: skip a multiply
            else:
                buf += cast(1 - dampening) * d_p
        if nesterov:
            look_ahead = buf * cast(momentum)        # g + μ·b, without touching g or b
            look_ahead += d_p
            d_p, owned = look_ahead, True
        else:
            d_p, owned = buf, False

    if owned:
        d_p *= lr             # reuse our temporary for lr·g
        param -= d_p
    else:
        param -= lr * d_p     # g or b belong to someone else: one temporary for lr·g
    return buf


def _is_parameter(x):
    """Whether x looks like a parameter: it has ``.data`` and ``.grad``.

    (A bare NumPy array has ``.data`` too, a memoryview, but no ``.grad``.)
    """
    return hasattr(x, "data") and hasattr(x, "grad")


def _param_list(params, where):
    """A list from an iterable of parameters, refusing the usual mistakes with a clear error."""
    if _is_parameter(params):
        raise TypeError(
            f"{where}: params must be an iterable of parameters or of param-group dicts, got a "
            f"single {type(params).__name__}; wrap it in a list"
        )
    if isinstance(params, (set, frozenset)):
        # The state dict numbers parameters by position, so their order must be fixed.
        raise TypeError(f"{where}: params must be an ordered iterable (list, tuple, generator), not a set")
    if isinstance(params, (dict, str)) or not hasattr(params, "__iter__"):
        raise TypeError(
            f"{where}: params must be an iterable of parameters or of param-group dicts, got "
            f"{type(params).__name__}"
        )
    return list(params)


def _as_param_groups(params):
    """The constructor's ``params`` as a non-empty list of group dicts."""
    items = _param_list(params, "SGD")
    if not items:
        raise ValueError("SGD: optimizer got an empty parameter list")
    if all(isinstance(item, dict) for item in items):
        return items
    if any(isinstance(item, dict) for item in items):
        raise TypeError("SGD: params mixes param-group dicts and parameters; use one or the other")
    return [{"params": items}]


def _check_parameter(p, where):
    """A parameter must hold a floating-point array (gradients are only defined for those)."""
    if not _is_parameter(p):
        raise TypeError(
            f"{where} is a {type(p).__name__}, not a parameter (an object with .data and .grad, "
            "e.g. Tensor(x, requires_grad=True))"
        )
    if getattr(p, "is_leaf", True) is False:
        # Updating a computed tensor in place would not change the leaves it came from.
        raise ValueError(f"{where} is not a leaf tensor (it was computed by an op); optimize its inputs")
    data = p.data
    if not hasattr(data, "dtype") or not np.issubdtype(data.dtype, np.floating):
        raise TypeError(
            f"{where} must hold a floating-point array, got "
            f"{getattr(data, 'dtype', type(data).__name__)}"
        )


def _check_grad(index, p):
    """The gradient must match its parameter in shape, dtype and device (as in PyTorch)."""
    grad, data = p.grad, p.data
    if not hasattr(grad, "shape") or not hasattr(grad, "dtype"):
        raise TypeError(
            f"SGD.step: parameter {index} has a .grad of type {type(grad).__name__}; expected a "
            f"NumPy/CuPy array like its data ({_describe(data)})"
        )
    if (tuple(grad.shape) != tuple(data.shape) or grad.dtype != data.dtype
            or device_of(grad) != device_of(data)):
        raise ValueError(
            f"SGD.step: parameter {index} has {_describe(data)}, but its .grad has "
            f"{_describe(grad)}; they must match"
        )


def _restored_entry(entry, p, index, where):
    """A saved ``{"momentum_buffer": array}`` (or ``{}``) checked against its parameter, with the
    buffer as a fresh copy on the parameter's device and in its dtype."""
    if not isinstance(entry, dict) or set(entry) - {"momentum_buffer"}:
        raise ValueError(f"{where}: state of parameter {index} must be a dict with only 'momentum_buffer', "
                         f"got {entry!r:.200}")
    if "momentum_buffer" not in entry:
        return {}
    buf = entry["momentum_buffer"]
    if not hasattr(buf, "shape") or not np.issubdtype(getattr(buf, "dtype", object), np.floating):
        raise TypeError(f"{where}: momentum_buffer of parameter {index} must be a floating-point array, "
                        f"got {type(buf).__name__} {getattr(buf, 'dtype', '')}")
    if tuple(buf.shape) != tuple(p.data.shape):
        raise ValueError(f"{where}: momentum_buffer of parameter {index} has shape {tuple(buf.shape)} but "
                         f"the parameter has shape {tuple(p.data.shape)}")
    # to_device then astype: always a fresh copy, never an alias of the caller's array.
    return {"momentum_buffer": to_device(buf, device_of(p.data)).astype(p.data.dtype)}


def _check_buffer(index, param, buf):
    """A momentum buffer must still match its parameter (it would not after model.to(...))."""
    if tuple(buf.shape) != tuple(param.shape) or device_of(buf) != device_of(param):
        raise ValueError(
            f"SGD.step: the momentum buffer of parameter {index} has {_describe(buf)} but the "
            f"parameter has {_describe(param)}; was the model moved after the optimizer was "
            "made? Create the optimizer (or load its state) after moving the model"
        )
