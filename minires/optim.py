"""Optimizers and learning-rate schedules: ``SGD``, ``MultiStepLR``, ``WarmupUntil``.

The paper (Sec. 4.2) trains its CIFAR-10 ResNets with SGD, momentum 0.9, weight decay 1e-4,
mini-batches of 128, a learning rate of 0.1 divided by 10 at 32k and 48k iterations, and stops
at 64k iterations. ResNet-110 first *warms up* at 0.01 until the training error is below 80 %
(about 400 iterations), then goes back to 0.1.

``SGD`` follows ``torch.optim.SGD`` exactly: same formulas, same order of operations, same
first-step rule for the momentum buffer, same ``param_groups`` and ``state_dict`` layout. So a
PyTorch user's hyper-parameters mean the same thing here.

A typical loop (schedules are stepped once per *iteration*, not per epoch)::

    opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    schedule = paper_schedule(opt)            # sets opt's lr for iteration 0
    for it in range(schedule.total_iterations):
        schedule.step(it)                     # the lr of iteration `it` (a pure function of it)
        opt.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        opt.step()

Checkpoints: every ``state_dict()`` here is made of Python numbers, strings, lists, dicts and
NumPy arrays. ``flatten_state`` / ``unflatten_state`` turn one into a flat ``{str: ndarray}``
mapping that ``np.savez`` can write (and ``np.load`` read back without pickle), and back.
"""
import bisect
import functools
import json
import math
import numbers

import numpy as np

from .backend import device_of, get_array_module, to_device, to_numpy

__all__ = [
    "SGD",
    "LRSchedule",
    "MultiStepLR",
    "WarmupUntil",
    "paper_schedule",
    "flatten_state",
    "unflatten_state",
    "PAPER_LR",
    "PAPER_MILESTONES",
    "PAPER_TOTAL_ITERATIONS",
    "PAPER_WARMUP_LR",
    "PAPER_WARMUP_ERROR",
]

# The CIFAR-10 recipe of He et al. (2015), Sec. 4.2.
PAPER_LR = 0.1
PAPER_MILESTONES = (32000, 48000)
PAPER_TOTAL_ITERATIONS = 64000
PAPER_WARMUP_LR = 0.01
PAPER_WARMUP_ERROR = 0.8


# ----------------------------------------------------------------------------- validation

def _check_real(where, name, value, minimum=None, strictly=False):
    """``value`` as a Python float, after checking it is a finite real number (>= minimum)."""
    # bool is a numbers.Real in Python; `momentum=True` is a bug, not 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)  # np.float64 / np.float32 scalars become plain Python floats
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, got {name}={value!r}")
    if minimum is not None and (value <= minimum if strictly else value < minimum):
        bound = ">" if strictly else ">="
        raise ValueError(f"{where}: invalid {name}={value!r}: must be {bound} {minimum}")
    return value


def _check_int(where, name, value, minimum=0):
    """``value`` as a Python int, after checking it is an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{where}: invalid {name}={value!r}: must be >= {minimum}")
    return value


def _check_sgd_hyperparameters(group, where):
    """Validate (and normalize to Python floats/bools) one param group's hyper-parameters.

    The rules are PyTorch's: lr, momentum and weight_decay must be >= 0, and Nesterov momentum
    needs a positive momentum and no dampening (its look-ahead formula assumes both).
    """
    group["lr"] = _check_real(where, "lr", group["lr"], minimum=0.0)
    group["momentum"] = _check_real(where, "momentum", group["momentum"], minimum=0.0)
    # PyTorch does not restrict dampening, so neither do we (beyond being a finite number).
    group["dampening"] = _check_real(where, "dampening", group["dampening"])
    group["weight_decay"] = _check_real(where, "weight_decay", group["weight_decay"], minimum=0.0)
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


# ----------------------------------------------------------------------------- SGD

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
    the whole update of a parameter is one fused CuPy kernel (``_sgd_kernels``) instead of
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
            self._update(index, p.data, p.grad, group)
        return loss

    def _update(self, index, param, grad, group):
        """The update of one parameter array, in place. ``grad`` itself is never modified."""
        if get_array_module(param) is not np:
            return self._update_gpu(index, param, grad, group)
        # Cast the hyper-parameters to the array's dtype: float32 · float32 stays float32,
        # and an np.float64 lr (a schedule may compute one) cannot promote the update.
        cast = param.dtype.type
        lr = cast(group["lr"])
        momentum, dampening = group["momentum"], group["dampening"]
        weight_decay = group["weight_decay"]

        d_p = grad       # the step direction; `owned` tells whether we may overwrite it
        owned = False
        if weight_decay != 0:
            d_p = param * cast(weight_decay)   # λ·p, a new array ...
            d_p += grad                         # ... plus g: PyTorch's grad.add(p, alpha=λ)
            owned = True

        if momentum != 0:
            state = self.state.setdefault(index, {})
            buf = state.get("momentum_buffer")
            if buf is None:
                # First step: b = g, no dampening (PyTorch's rule). A weight-decayed d_p is
                # already a fresh array, so it becomes the buffer without a copy; it is then
                # no longer ours to overwrite.
                buf = d_p if owned else d_p.copy()
                state["momentum_buffer"] = buf
            else:
                _check_buffer(index, param, buf)
                buf *= cast(momentum)
                if dampening == 0:
                    buf += d_p                           # (1 − 0)·g = g: skip a multiply
                else:
                    buf += cast(1 - dampening) * d_p
            if group["nesterov"]:
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

    def _update_gpu(self, index, param, grad, group):
        """``_update`` on a CuPy array: the same formulas as one fused kernel (``_sgd_kernels``).

        On CuPy the NumPy-style code above launches 6 kernels per parameter for the paper's
        SGD (momentum and weight decay), 8 with Nesterov; ResNet-20 has 65 parameter arrays,
        ResNet-56 170, and each launch costs more than its arithmetic at these sizes.
        """
        cast = param.dtype.type
        lr, weight_decay, momentum = cast(group["lr"]), cast(group["weight_decay"]), group["momentum"]
        plain, with_momentum = _sgd_kernels()
        if momentum == 0:
            plain(grad, lr, weight_decay, param)
            return
        state = self.state.setdefault(index, {})
        buf = state.get("momentum_buffer")
        first_step = buf is None
        if first_step:
            # PyTorch's first-step rule (b = g, no dampening) is applied by the kernel, which
            # fills this new buffer.
            buf = state["momentum_buffer"] = get_array_module(param).empty_like(param)
        else:
            _check_buffer(index, param, buf)
        with_momentum(grad, lr, weight_decay, cast(momentum), cast(1 - group["dampening"]),
                      group["nesterov"], first_step, param, buf)

    # --- checkpoints -------------------------------------------------------------------

    def state_dict(self):
        """The optimizer's state as plain data, in PyTorch's layout::

            {"state": {index: {"momentum_buffer": ndarray}, ...},
             "param_groups": [{"lr": 0.1, "momentum": 0.9, ..., "params": [0, 1, ...]}, ...]}

        Parameters are numbered across groups in order. Buffers are NumPy copies (fetched from
        the GPU when needed), so the dict can be saved (see ``flatten_state``) and is not
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
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"{where}: the saved state has {len(saved_groups)} param groups, this optimizer "
                f"has {len(self.param_groups)}"
            )

        # New group dicts: the saved hyper-parameters with this optimizer's parameters.
        new_groups, saved_to_param = [], {}
        for k, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            saved_params = list(saved["params"])
            if len(saved_params) != len(group["params"]):
                raise ValueError(
                    f"{where}: saved param group {k} has {len(saved_params)} parameters, this "
                    f"optimizer's group {k} has {len(group['params'])}"
                )
            missing = [name for name in _HYPERPARAMETERS if name not in saved]
            if missing:
                raise ValueError(f"{where}: saved param group {k} lacks {missing}")
            new_group = {key: value for key, value in saved.items() if key != "params"}
            _check_sgd_hyperparameters(new_group, f"{where}: saved param group {k}")
            new_group["params"] = group["params"]
            new_groups.append(new_group)
            for saved_index, p in zip(saved_params, group["params"]):
                saved_to_param[int(saved_index)] = p
        positions = {id(p): i for i, _, p in self._indexed_params()}

        new_state = {}
        for saved_index, entry in dict(state_dict["state"]).items():
            if isinstance(saved_index, bool) or not isinstance(saved_index, numbers.Integral):
                raise TypeError(f"{where}: state keys must be parameter indices (ints), got {saved_index!r}")
            p = saved_to_param.get(int(saved_index))
            if p is None:
                raise ValueError(
                    f"{where}: the saved state has an entry for parameter {saved_index}, which "
                    "is in none of the saved param groups"
                )
            if not isinstance(entry, dict) or set(entry) - {"momentum_buffer"}:
                raise ValueError(
                    f"{where}: state of parameter {saved_index} must be a dict with only "
                    f"'momentum_buffer', got {entry!r:.200}"
                )
            restored = {}
            if "momentum_buffer" in entry:
                buf = entry["momentum_buffer"]
                if not hasattr(buf, "shape") or not hasattr(buf, "dtype"):
                    raise TypeError(
                        f"{where}: momentum_buffer of parameter {saved_index} must be an array, "
                        f"got {type(buf).__name__}"
                    )
                if tuple(buf.shape) != tuple(p.data.shape):
                    raise ValueError(
                        f"{where}: momentum_buffer of parameter {saved_index} has shape "
                        f"{tuple(buf.shape)} but the parameter has shape {tuple(p.data.shape)}"
                    )
                if not np.issubdtype(buf.dtype, np.floating):
                    raise TypeError(
                        f"{where}: momentum_buffer of parameter {saved_index} has dtype "
                        f"{buf.dtype}, expected a floating-point array"
                    )
                # to_device then astype: always a fresh copy, on the parameter's device and in
                # its dtype (astype copies by default), never an alias of the caller's array.
                restored["momentum_buffer"] = to_device(buf, device_of(p.data)).astype(p.data.dtype)
            new_state[positions[id(p)]] = restored

        # Update the group dicts in place, so references to them (a schedule's) stay valid.
        for group, new_group in zip(self.param_groups, new_groups):
            group.clear()
            group.update(new_group)
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for k, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {k}")
            for key in sorted(group):
                if key != "params":
                    lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)


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


def _check_buffer(index, param, buf):
    """A momentum buffer must still match its parameter (it would not after model.to(...))."""
    if tuple(buf.shape) != tuple(param.shape) or device_of(buf) != device_of(param):
        raise ValueError(
            f"SGD.step: the momentum buffer of parameter {index} has {_describe(buf)} but the "
            f"parameter has {_describe(param)}; was the model moved after the optimizer was "
            "made? Create the optimizer (or load its state) after moving the model"
        )


@functools.cache
def _sgd_kernels():
    """SGD's update as CuPy elementwise kernels: (without momentum, with momentum).

    Built on first use, so importing minires never needs CuPy. Each kernel reads g and p (and
    b) once and writes p (and b) once: the whole class-docstring update, one launch per
    parameter, where the NumPy-style code needs 6 to 8. ``T`` is the parameter's dtype; the
    hyper-parameters arrive as scalars cast to it. ``weight_decay != 0`` is tested as in
    ``_update``, so a zero decay never touches the gradient (0 * inf would be NaN).
    """
    import cupy as cp

    plain = cp.ElementwiseKernel(
        "T grad, T lr, T weight_decay", "T param",
        """
        T d_p = weight_decay != 0 ? grad + weight_decay * param : grad;
        param = param - lr * d_p;
        """,
        "minires_sgd")
    with_momentum = cp.ElementwiseKernel(
        "T grad, T lr, T weight_decay, T momentum, T one_minus_dampening, bool nesterov, bool first_step",
        "T param, T buf",
        """
        T d_p = weight_decay != 0 ? grad + weight_decay * param : grad;
        buf = first_step ? d_p : momentum * buf + one_minus_dampening * d_p;
        d_p = nesterov ? d_p + momentum * buf : buf;
        param = param - lr * d_p;
        """,
        "minires_sgd_momentum")
    return plain, with_momentum


# ----------------------------------------------------------------------------- checkpoints

# JSON markers used by flatten_state (keys no state dict of ours uses).
_ARRAY = "__array__"
_INT_KEYS = "__int_keys__"


def flatten_state(state_dict, prefix):
    """Flatten a nested state dict into ``{str: ndarray}`` for ``np.savez``.

    Arrays (NumPy or CuPy) become NumPy entries named by their path, e.g.
    ``"optimizer.state.3.momentum_buffer"``; everything else (numbers, strings, bools, None,
    lists, dicts with str or int keys) goes into one JSON string stored under ``prefix``
    itself, with ``{"__array__": name}`` where an array was. JSON keeps the exact types and
    values (floats round-trip exactly; int dict keys are marked so they come back as ints);
    tuples come back as lists.

    Several state dicts can share one file under different prefixes::

        np.savez(path, **flatten_state(opt.state_dict(), "optimizer"),
                 **flatten_state(schedule.state_dict(), "schedule"), **model_arrays)
        with np.load(path) as f:
            opt.load_state_dict(unflatten_state(f, "optimizer"))
    """
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"flatten_state: prefix must be a non-empty string, got {prefix!r}")
    if not isinstance(state_dict, dict):
        raise TypeError(f"flatten_state: expected a dict, got {type(state_dict).__name__}")
    flat = {}

    def encode(value, path):
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                if _ARRAY in value or _INT_KEYS in value:
                    raise ValueError(f"flatten_state: key {_ARRAY!r}/{_INT_KEYS!r} at {path!r} is reserved")
                return {k: encode(v, f"{path}.{k}") for k, v in value.items()}
            if all(isinstance(k, numbers.Integral) and not isinstance(k, (bool, np.bool_)) for k in value):
                out = {str(int(k)): encode(v, f"{path}.{int(k)}") for k, v in value.items()}
                out[_INT_KEYS] = True
                return out
            raise TypeError(f"flatten_state: dict at {path!r} mixes key types: {list(value)!r:.200}")
        if isinstance(value, (list, tuple)):
            return [encode(v, f"{path}.{i}") for i, v in enumerate(value)]
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
        if hasattr(value, "shape") and hasattr(value, "dtype"):  # a NumPy or CuPy array
            if path in flat:
                raise ValueError(f"flatten_state: two arrays would be stored as {path!r}")
            flat[path] = to_numpy(value).copy()
            return {_ARRAY: path}
        raise TypeError(f"flatten_state: cannot store {type(value).__name__} at {path!r}")

    flat[prefix] = np.array(json.dumps(encode(state_dict, prefix)))
    return flat


def unflatten_state(flat, prefix):
    """Inverse of ``flatten_state``: rebuild the state dict stored under ``prefix``.

    ``flat`` is any mapping: the dict ``flatten_state`` returned, or an ``np.load``-ed file
    (read without pickle). Entries under other prefixes are ignored. Arrays come back as
    NumPy copies.
    """
    if prefix not in flat:
        raise KeyError(f"unflatten_state: no entry {prefix!r} (a state dict saved with flatten_state)")
    text = flat[prefix]
    text = text if isinstance(text, str) else np.asarray(text).item()
    try:
        tree = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"unflatten_state: entry {prefix!r} is not a flatten_state structure: {exc}"
        ) from None

    def decode(node):
        if isinstance(node, dict):
            if set(node) == {_ARRAY}:
                name = node[_ARRAY]
                if name not in flat:
                    raise KeyError(f"unflatten_state: the array {name!r} is missing")
                return np.array(flat[name], copy=True)
            if node.pop(_INT_KEYS, False):
                return {int(k): decode(v) for k, v in node.items()}
            return {k: decode(v) for k, v in node.items()}
        if isinstance(node, list):
            return [decode(v) for v in node]
        return node

    return decode(tree)


# ----------------------------------------------------------------------------- schedules

def _check_iteration(iteration, where):
    return _check_int(where, "iteration", iteration, minimum=0)


class LRSchedule:
    """Base class of the learning-rate schedules: ``lr_at(iteration)`` plus stepping.

    The learning rate of a schedule is a *pure function of the iteration count*
    (``lr_at(it)``, iterations counted from 0). Resuming a run bit-for-bit then needs only the
    iteration number: nothing accumulates in the schedule (unlike PyTorch's chained
    schedulers, which multiply the lr step by step).

    ``step(it)`` writes ``lr_at(it)`` into every param group of the optimizer and records
    ``last_iteration = it``. Two ways to drive it, both fine:

    * explicit: call ``schedule.step(it)`` at the start of iteration ``it``, before
      ``opt.step()``;
    * PyTorch style: construction already sets the lr of iteration 0; call ``schedule.step()``
      (no argument: ``last_iteration + 1``) after each ``opt.step()``.

    ``optimizer`` may be None, to plot or query ``lr_at`` alone.
    """

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.last_iteration = 0
        self._apply()  # as in PyTorch, a new schedule sets the lr of the first iteration

    def lr_at(self, iteration):
        """The learning rate of iteration ``iteration`` (0-based)."""
        raise NotImplementedError

    def step(self, iteration=None):
        """Set the optimizer's lr to ``lr_at(iteration)`` (default: ``last_iteration + 1``)."""
        if iteration is None:
            iteration = self.last_iteration + 1
        self.last_iteration = _check_iteration(iteration, f"{type(self).__name__}.step")
        self._apply()
        return self.lr_at(self.last_iteration)

    def get_last_lr(self):
        """The lr of ``last_iteration``, one per param group (PyTorch's name)."""
        groups = self.optimizer.param_groups if self.optimizer is not None else [None]
        return [self.lr_at(self.last_iteration) for _ in groups]

    def _apply(self):
        if self.optimizer is not None:
            lr = self.lr_at(self.last_iteration)
            for group in self.optimizer.param_groups:
                group["lr"] = lr


class MultiStepLR(LRSchedule):
    """Step decay: the lr is multiplied by ``gamma`` at each milestone (in iterations).

    ``MultiStepLR(optimizer, base_lr, milestones, gamma=0.1, total_iterations=None)``::

        lr_at(it) = base_lr · gamma^k,    k = number of milestones m with m <= it

    so with milestones [32000, 48000]: iterations 0..31999 use base_lr, 32000..47999 use
    base_lr·gamma, 48000.. use base_lr·gamma² (PyTorch's ``MultiStepLR`` counts the same way).
    Milestones must be strictly increasing and positive. ``total_iterations`` (optional) is
    where training stops: stored for the training loop, and every milestone must lie before
    it (a milestone past the end is usually an epochs-vs-iterations mix-up).
    For milestones in epochs, use ``MultiStepLR.from_epochs``.
    """

    def __init__(self, optimizer, base_lr, milestones, gamma=0.1, total_iterations=None):
        self._configure(base_lr, milestones, gamma, total_iterations, "MultiStepLR")
        super().__init__(optimizer)

    def _configure(self, base_lr, milestones, gamma, total_iterations, where):
        base_lr = _check_real(where, "base_lr", base_lr, minimum=0.0)
        gamma = _check_real(where, "gamma", gamma, minimum=0.0, strictly=True)
        if isinstance(milestones, (str, dict, set, frozenset)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"{where}: milestones must be a list of iterations, got {milestones!r}")
        milestones = [_check_int(where, "milestone", m, minimum=1) for m in milestones]
        if any(a >= b for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"{where}: milestones must be strictly increasing, got {milestones}")
        if total_iterations is not None:
            total_iterations = _check_int(where, "total_iterations", total_iterations, minimum=1)
            if milestones and milestones[-1] >= total_iterations:
                raise ValueError(
                    f"{where}: milestone {milestones[-1]} is not before total_iterations="
                    f"{total_iterations} (milestones and total must both be in iterations)"
                )
        self.base_lr, self.milestones, self.gamma = base_lr, milestones, gamma
        self.total_iterations = total_iterations

    @classmethod
    def from_epochs(cls, optimizer, base_lr, milestones, iterations_per_epoch, gamma=0.1,
                    total_epochs=None):
        """A ``MultiStepLR`` whose milestones (and total) are given in whole epochs.

        Epoch ``e`` starts at iteration ``e · iterations_per_epoch``, so that is where a
        milestone at epoch ``e`` takes effect. Everything is stored in iterations.
        """
        where = "MultiStepLR.from_epochs"
        per_epoch = _check_int(where, "iterations_per_epoch", iterations_per_epoch, minimum=1)
        if isinstance(milestones, (str, dict, set, frozenset)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"{where}: milestones must be a list of epochs, got {milestones!r}")
        its = [_check_int(where, "milestone (epochs)", e, minimum=1) * per_epoch for e in milestones]
        total = None
        if total_epochs is not None:
            total = _check_int(where, "total_epochs", total_epochs, minimum=1) * per_epoch
        return cls(optimizer, base_lr, its, gamma=gamma, total_iterations=total)

    def lr_at(self, iteration):
        iteration = _check_iteration(iteration, "MultiStepLR.lr_at")
        # bisect_right counts the milestones <= iteration: the lr changes *at* a milestone.
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, iteration)

    def state_dict(self):
        """``{"base_lr", "milestones", "gamma", "total_iterations", "last_iteration"}``."""
        return {
            "base_lr": self.base_lr,
            "milestones": list(self.milestones),
            "gamma": self.gamma,
            "total_iterations": self.total_iterations,
            "last_iteration": self.last_iteration,
        }

    def load_state_dict(self, state_dict):
        """Restore everything from ``state_dict()`` and set the lr of ``last_iteration``."""
        where = "MultiStepLR.load_state_dict"
        keys = ("base_lr", "milestones", "gamma", "total_iterations", "last_iteration")
        _check_keys(state_dict, keys, where)
        last = _check_iteration(state_dict["last_iteration"], where)
        self._configure(state_dict["base_lr"], state_dict["milestones"], state_dict["gamma"],
                        state_dict["total_iterations"], where)
        self.last_iteration = last
        self._apply()

    def __repr__(self):
        return (f"MultiStepLR(base_lr={self.base_lr}, milestones={self.milestones}, "
                f"gamma={self.gamma}, total_iterations={self.total_iterations})")


class WarmupUntil(LRSchedule):
    """A warm-up at a small lr until the training error first drops below a threshold.

    ``WarmupUntil(schedule, error_threshold=0.8, warmup_lr=0.01)`` wraps another schedule
    (e.g. ``paper_schedule(opt)``). For ResNet-110 the paper uses "0.01 to warm up the training
    until the training error is below 80 % (about 400 iterations), and then go back to 0.1".
    How long that takes depends on the data, so the training loop reports the error::

        schedule.step(it)                 # lr of iteration it
        ... forward, backward, opt.step() ...
        schedule.observe_train_error(running_error)   # a fraction in [0, 1]

    Call ``observe_train_error`` every iteration (or every N: the check happens on each call)
    with the running training error, e.g. the mean over the current epoch so far or the last
    few dozen iterations: a single batch of 128 is noisy enough to cross 80 % by chance. The
    first time the error is strictly below ``error_threshold``, the warm-up ends *after* that
    iteration ``e`` (recorded as ``warmup_end_iteration``) and never restarts::

        lr_at(it) = warmup_lr            if warm-up not over or it <= e
                    schedule.lr_at(it)   otherwise

    The wrapped schedule keeps counting from iteration 0 (its milestones are absolute, as in
    the paper: 0.1 until 32k, not 32k after the warm-up). Given ``e``, the lr is again a pure
    function of the iteration, which is why a resumed run continues bit-for-bit.
    """

    def __init__(self, schedule, error_threshold=PAPER_WARMUP_ERROR, warmup_lr=PAPER_WARMUP_LR):
        if not isinstance(schedule, LRSchedule):
            raise TypeError(f"WarmupUntil: schedule must be an LRSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.error_threshold = _check_real("WarmupUntil", "error_threshold", error_threshold, minimum=0.0)
        if self.error_threshold > 1:
            raise ValueError(
                f"WarmupUntil: error_threshold must be a fraction in [0, 1], got "
                f"{self.error_threshold!r} (a percentage?)"
            )
        self.warmup_lr = _check_real("WarmupUntil", "warmup_lr", warmup_lr, minimum=0.0)
        self.warmup_end_iteration = None
        super().__init__(schedule.optimizer)
        self.last_iteration = schedule.last_iteration
        self._apply()

    @property
    def warmup_done(self):
        """Whether the training error has dropped below the threshold yet."""
        return self.warmup_end_iteration is not None

    @property
    def total_iterations(self):
        """Where training stops: the wrapped schedule's ``total_iterations``."""
        return getattr(self.schedule, "total_iterations", None)

    def lr_at(self, iteration):
        iteration = _check_iteration(iteration, "WarmupUntil.lr_at")
        if self.warmup_end_iteration is None or iteration <= self.warmup_end_iteration:
            return self.warmup_lr
        return self.schedule.lr_at(iteration)

    def step(self, iteration=None):
        lr = super().step(iteration)
        self.schedule.last_iteration = self.last_iteration  # keeps its state_dict in step
        return lr

    def observe_train_error(self, error, iteration=None):
        """Report the training error (a fraction) of ``iteration`` (default: ``last_iteration``).

        Ends the warm-up the first time ``error < error_threshold``; later calls change
        nothing. Returns ``warmup_done``.
        """
        error = _check_real("WarmupUntil.observe_train_error", "error", error, minimum=0.0)
        if error > 1:
            raise ValueError(
                f"WarmupUntil.observe_train_error: error must be a fraction in [0, 1], got "
                f"{error!r} (a percentage?)"
            )
        if iteration is None:
            iteration = self.last_iteration
        iteration = _check_iteration(iteration, "WarmupUntil.observe_train_error")
        if not self.warmup_done and error < self.error_threshold:
            self.warmup_end_iteration = iteration
            # The lr of iterations after `iteration` changes; if the loop already stepped
            # past it (PyTorch style), the optimizer needs the new value now.
            self._apply()
        return self.warmup_done

    def state_dict(self):
        """Threshold, warm-up lr, ``warmup_done``, ``warmup_end_iteration`` (None while warming
        up), ``last_iteration`` and the wrapped schedule's state under ``"schedule"``."""
        return {
            "error_threshold": self.error_threshold,
            "warmup_lr": self.warmup_lr,
            "warmup_done": self.warmup_done,
            "warmup_end_iteration": self.warmup_end_iteration,
            "last_iteration": self.last_iteration,
            "schedule": self.schedule.state_dict(),
        }

    def load_state_dict(self, state_dict):
        """Restore from ``state_dict()`` (the wrapped schedule too) and set the current lr."""
        where = "WarmupUntil.load_state_dict"
        _check_keys(state_dict, ("error_threshold", "warmup_lr", "warmup_done",
                                 "warmup_end_iteration", "last_iteration", "schedule"), where)
        end = state_dict["warmup_end_iteration"]
        if end is not None:
            end = _check_int(where, "warmup_end_iteration", end, minimum=0)
        if bool(state_dict["warmup_done"]) != (end is not None):
            raise ValueError(
                f"{where}: warmup_done={state_dict['warmup_done']!r} contradicts "
                f"warmup_end_iteration={end!r}"
            )
        threshold = _check_real(where, "error_threshold", state_dict["error_threshold"], minimum=0.0)
        warmup_lr = _check_real(where, "warmup_lr", state_dict["warmup_lr"], minimum=0.0)
        last = _check_iteration(state_dict["last_iteration"], where)
        self.schedule.load_state_dict(state_dict["schedule"])
        self.error_threshold, self.warmup_lr = threshold, warmup_lr
        self.warmup_end_iteration, self.last_iteration = end, last
        self._apply()

    def __repr__(self):
        return (f"WarmupUntil({self.schedule!r}, error_threshold={self.error_threshold}, "
                f"warmup_lr={self.warmup_lr}, warmup_end_iteration={self.warmup_end_iteration})")


def _check_keys(state_dict, keys, where):
    if not isinstance(state_dict, dict) or set(state_dict) != set(keys):
        got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
        raise ValueError(f"{where}: expected a dict with keys {sorted(keys)}, got {got}")


def paper_schedule(optimizer, total_iterations=PAPER_TOTAL_ITERATIONS, warmup=False):
    """The paper's CIFAR-10 schedule: lr 0.1, ÷10 at 32k and 48k iterations, stop at 64k.

    Returns ``MultiStepLR(optimizer, 0.1, [32000, 48000], gamma=0.1, total_iterations=64000)``.
    A shorter ``total_iterations`` keeps the shape: milestones at 1/2 and 3/4 of the run
    (exactly where the paper's are). ``warmup=True`` wraps it in
    ``WarmupUntil(..., error_threshold=0.8, warmup_lr=0.01)``, as the paper does for ResNet-110.
    """
    total = _check_int("paper_schedule", "total_iterations", total_iterations, minimum=4)
    milestones = [total // 2, total * 3 // 4]
    schedule = MultiStepLR(optimizer, PAPER_LR, milestones, gamma=0.1, total_iterations=total)
    if warmup:
        schedule = WarmupUntil(schedule, error_threshold=PAPER_WARMUP_ERROR, warmup_lr=PAPER_WARMUP_LR)
    return schedule
