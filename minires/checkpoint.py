"""Checkpoints as ``.npz`` files: model, optimiser, schedule and run state, written atomically.

Layout (all loadable with ``np.load(path)``, no pickle):

    model.<name>        every entry of ``model.state_dict()`` (NumPy arrays)
    optimizer...        ``flatten_state(optimizer.state_dict(), "optimizer")``
    schedule...         ``flatten_state(schedule.state_dict(), "schedule")``
    meta...             ``flatten_state(meta, "meta")``: config, epoch, iteration, RNG states

Every ``state_dict()`` of minires is made of Python numbers, strings, lists, dicts and arrays.
``flatten_state`` / ``unflatten_state`` turn one into a flat ``{str: ndarray}`` mapping that
``np.savez`` can write (and ``np.load`` read back without pickle), and back.
"""
import contextlib
import json
import numbers
import os
import tempfile

import numpy as np

from .backend import to_numpy


class NonFiniteCheckpoint(ValueError):
    """A checkpoint would hold NaN or infinite values: it is not written (the last one stays)."""


def save_checkpoint(path, model, optimizer=None, schedule=None, meta=None):
    """Write a checkpoint to ``path`` atomically: a temporary file of this writer's own, then
    ``os.replace``.

    A crash, Ctrl-C or a full disk during the write leaves the previous checkpoint intact, and
    the temporary file is removed on every exit path. A checkpoint is written only when every
    array is finite: otherwise :class:`NonFiniteCheckpoint` names the arrays, and the previous
    checkpoint, the last finite one, stays in place (checked here, on the host copies, so a
    captured CUDA-graph step needs no synchronisation of its own).
    """
    arrays = {f"model.{k}": to_numpy(v) for k, v in model.state_dict().items()}
    if optimizer is not None:
        arrays.update(flatten_state(optimizer.state_dict(), "optimizer"))
    if schedule is not None:
        arrays.update(flatten_state(schedule.state_dict(), "schedule"))
    arrays.update(flatten_state(meta or {}, "meta"))
    bad = [k for k, a in arrays.items() if a.dtype.kind in "fc" and not np.isfinite(a).all()]
    if bad:
        raise NonFiniteCheckpoint(
            f"save_checkpoint: {len(bad)} arrays hold NaN or infinite values ({', '.join(bad[:5])}"
            f"{', ...' if len(bad) > 5 else ''}); {path} was not written")
    with write_atomically(path, "wb") as f:
        np.savez(f, **arrays)


@contextlib.contextmanager
def write_atomically(path, mode="w"):
    """Open a temporary file of this writer's own beside ``path``; on success it replaces ``path``.

    A crash, a kill or a full disk leaves the old file or the new one, never half of one, and the
    temporary file is removed on every exit path. Used for checkpoints and the metrics files.
    """
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")  # unique per writer
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": ""})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are as readable as others
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path):
    """Read a checkpoint: ``{"model": state_dict, "optimizer": ..., "schedule": ..., "meta": dict}``."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            flat = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError ...
        raise ValueError(f"checkpoint {path} is not a readable .npz file: {e}") from None
    if "meta" not in flat:
        raise ValueError(f"checkpoint {path} has no 'meta' entry: not a minires checkpoint")
    ckpt = {
        "model": {k[len("model."):]: v for k, v in flat.items() if k.startswith("model.")},
    }
    for part in ("meta", "optimizer", "schedule"):
        ckpt[part] = unflatten_state(flat, part) if any(k == part or k.startswith(part + ".") for k in flat) else None
    return ckpt


# ----------------------------------------------------------------------------- state dicts as arrays

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
