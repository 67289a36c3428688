"""Checkpoints as ``.npz`` files: model, optimiser, schedule and run state, written atomically.

Layout (all loadable with ``np.load(path)``, no pickle):

    model.<name>        every entry of ``model.state_dict()`` (NumPy arrays)
    optimizer...        ``flatten_state(optimizer.state_dict(), "optimizer")``
    schedule...         ``flatten_state(schedule.state_dict(), "schedule")``
    meta...             ``flatten_state(meta, "meta")``: config, epoch, iteration, RNG states
"""
import os

import numpy as np

from .backend import to_numpy
from .optim import flatten_state, unflatten_state


def save_checkpoint(path, model, optimizer=None, schedule=None, meta=None):
    """Write a checkpoint to ``path`` atomically: a temporary file, then ``os.replace``.

    A crash or Ctrl-C during the write leaves the previous checkpoint intact.
    """
    arrays = {f"model.{k}": to_numpy(v) for k, v in model.state_dict().items()}
    if optimizer is not None:
        arrays.update(flatten_state(optimizer.state_dict(), "optimizer"))
    if schedule is not None:
        arrays.update(flatten_state(schedule.state_dict(), "schedule"))
    arrays.update(flatten_state(meta or {}, "meta"))
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
