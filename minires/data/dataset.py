"""A data set as a run uses it: the arrays, and an identity that names them without a path.

A run records *what* it trained on, never *where* the files were: the data set's name, the subset
(the first N training and M test images of the official order) and a content hash of the arrays.
The same images give the same identity from the official archive, from a copy of just those
images, on any machine; ``--resume`` checks it (the data's location may change, its content not).

The learner's subset, :data:`SAMPLE_SUBSET`, is the first 4,000 training and the first 1,000 test
images of the official archive (``--subset 4000 1000``): big enough for the notebooks and a CPU
run of the degradation experiment, small enough for an epoch in seconds. :data:`SAMPLE_SHA256`
pins its content.
"""
import hashlib
from typing import NamedTuple

import numpy as np

from .cifar10 import DownloadError, load_cifar10
from .find import DataNotFoundError, find_or_download_cifar10
from .synthetic import synthetic_cifar

#: The learner's subset: the first 4,000 training and 1,000 test images of the official archive.
SAMPLE_SUBSET = (4000, 1000)
#: :func:`content_hash` of that subset's ``(x_train, y_train, x_test, y_test)``.
SAMPLE_SHA256 = "18c5b9c9e5d0b302b3cf218b20debde29be0555a08a59ab40244ffcc706182df"
#: The official archive's counts.
FULL_SIZES = (50_000, 10_000)
#: What :func:`load_dataset` makes for ``name="synthetic"`` (as ``--dataset synthetic``).
SYNTHETIC_SIZES = (2000, 500)


class Dataset(NamedTuple):
    """``(x_train, y_train, x_test, y_test)`` with the data set's ``identity`` and a ``description``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    identity: dict
    description: str


def content_hash(*arrays):
    """sha256 over each array's dtype, shape and bytes (C order): equal only for equal data."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.data)
    return digest.hexdigest()


def identity_of(name, arrays, subset=None, seed=None):
    """``{"name", "subset", "train", "test", "sha256"}`` (and ``"seed"`` for synthetic data)."""
    x_train, _, x_test, _ = arrays
    ident = {"name": name, "subset": None if subset is None else [int(s) for s in subset],
             "train": len(x_train), "test": len(x_test), "sha256": content_hash(*arrays)}
    if seed is not None:
        ident["seed"] = int(seed)
    return ident


def describe(identity):
    """One sentence saying what the images are, from the identity alone (for logs and notebooks)."""
    n, m = f"{identity['train']:,}", f"{identity['test']:,}"
    if identity["name"] == "synthetic":
        return (f"synthetic CIFAR-shaped images ({n} training, {m} test; seed {identity.get('seed')}), "
                "not CIFAR-10")
    if identity["sha256"] == SAMPLE_SHA256:
        return (f"CIFAR-10, the learner's subset: the first {n} training and {m} test images of the "
                "official archive (content hash verified)")
    if identity["subset"] is None and (identity["train"], identity["test"]) == FULL_SIZES:
        return f"CIFAR-10, all {n} training and {m} test images"
    if identity["subset"] is not None and (identity["train"], identity["test"]) == tuple(identity["subset"]):
        unverified = (" (not the genuine images: their content hash differs)"
                      if tuple(identity["subset"]) == SAMPLE_SUBSET else "")
        return f"CIFAR-10, the first {n} training and {m} test images{unverified}"
    return f"a CIFAR-10-format archive of {n} training and {m} test images (not the official counts)"


def check_subset(subset, func="load_dataset"):
    """``(train, test)`` as two positive ints, or None; else a ValueError naming ``func``."""
    if subset is None:
        return None
    if (not isinstance(subset, (tuple, list)) or len(subset) != 2
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in subset)):
        raise ValueError(f"{func}: subset must be two positive ints (training, test images), e.g. "
                         f"{list(SAMPLE_SUBSET)}, got {subset!r}")
    return tuple(int(s) for s in subset)


def load_dataset(name="cifar10", subset=None, data_dir=None, *, download=True, seed=0,
                 fallback=None, progress=True):
    """The data set a run or a notebook trains on, as a :class:`Dataset`.

    ``name`` is ``"cifar10"`` (found or downloaded by :func:`find_or_download_cifar10`, then the
    first ``subset = (train, test)`` images when given) or ``"synthetic"`` (``synthetic_cifar``,
    2,000 and 500 images drawn with ``seed``). ``fallback="synthetic"`` turns a CIFAR-10 that
    cannot be found or downloaded into synthetic data, and the description says so and why: for
    notebooks, which must run anywhere and must not claim CIFAR-10 when they did not have it.
    """
    if name not in ("cifar10", "synthetic"):
        raise ValueError(f"load_dataset: name must be 'cifar10' or 'synthetic', got {name!r}")
    if fallback not in (None, "synthetic"):
        raise ValueError(f"load_dataset: fallback must be None or 'synthetic', got {fallback!r}")
    subset = check_subset(subset)
    if name == "synthetic":
        arrays = synthetic_cifar(*SYNTHETIC_SIZES, seed=seed)
        ident = identity_of("synthetic", arrays, seed=seed)
        return Dataset(*arrays, ident, describe(ident))
    try:
        path = find_or_download_cifar10(data_dir, download, progress=progress)
    except (DataNotFoundError, DownloadError) as exc:
        if fallback is None:
            raise
        synthetic = load_dataset("synthetic", seed=seed)
        reason = str(exc).split(". ")[0]
        return synthetic._replace(description=f"{synthetic.description}: no CIFAR-10 was found ({reason})")
    arrays = load_cifar10(path, *(subset or (None, None)))
    ident = identity_of("cifar10", arrays, subset)
    return Dataset(*arrays, ident, describe(ident))
