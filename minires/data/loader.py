"""Splits and mini-batches: a validation split, one epoch of batches, and ``Loader``.

Images stay ``uint8`` until a mini-batch is drawn; a batch is turned into ``float32``,
augmented, and only then moved to the GPU (``device='gpu'``), so the 150 MB training set never
has to live on the GPU.

Reproducibility: all randomness comes from a ``numpy.random.Generator`` passed in. Each call of
:func:`iterate_batches` draws the whole epoch's randomness at once, in a fixed order, so the
state of an epoch is just ``rng.bit_generator.state`` before the call: restore it and pass
``start_batch`` to resume a run mid-epoch bit for bit.
"""
import math

import numpy as np

from .._checks import as_generator, check_generator, check_int
from ..backend import check_device, to_device
from .transforms import _check_images, _check_mean, crop_flip, draw_crop_flip, normalize


def train_val_split(x, y, val_size=5000, rng=0):
    """Hold out a random validation set: ``(x_train, y_train, x_val, y_val)``.

    The paper's split of the 50k training images is 45k/5k, the default here.
    ``val_size`` is a number of images (int) or a fraction in (0, 1) (float), e.g. 0.1
    for the 4,000-image sample. ``rng`` is a seed or a Generator. Both parts keep the
    original order of the images.
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"train_val_split: x has {n} images but y has {len(y)} labels")
    if isinstance(val_size, (float, np.floating)):
        if not 0.0 < val_size < 1.0:
            raise ValueError(f"train_val_split: a fractional val_size must be in (0, 1), "
                             f"got {val_size}")
        k = int(round(val_size * n))
    elif isinstance(val_size, (int, np.integer)) and not isinstance(val_size, bool):
        k = int(val_size)
    else:
        raise TypeError(f"train_val_split: val_size must be an int or a float, got {val_size!r}")
    if not 0 < k < n:
        raise ValueError(
            f"train_val_split: val_size={val_size} gives {k} validation images out of {n}; "
            "both parts must be non-empty (the paper holds out 5000 of 50,000; for a smaller "
            "set pass a smaller count or a fraction such as 0.1)")
    rng = as_generator(rng, "train_val_split")
    perm = rng.permutation(n)
    val, train = np.sort(perm[:k]), np.sort(perm[k:])
    return x[train], y[train], x[val], y[val]


def _check_labels(func, x, y):
    if not isinstance(y, np.ndarray) or y.ndim != 1 or y.dtype.kind not in "iu":
        got = (f"{y.dtype} array of shape {y.shape}" if isinstance(y, np.ndarray)
               else type(y).__name__)
        raise TypeError(f"{func}: y must be a 1-D integer NumPy array, got {got}")
    if len(y) != len(x):
        raise ValueError(f"{func}: x has {len(x)} images but y has {len(y)} labels")


def num_batches(n, batch_size, drop_last=False):
    """How many batches an epoch over ``n`` samples has."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def iterate_batches(x, y, batch_size, *, shuffle=False, rng=None, augment=False, mean=None,
                    drop_last=False, device="cpu", start_batch=0, padding=4):
    """One epoch of mini-batches ``(x_batch, y_batch)``: float32 ``(B,3,32,32)``, int64 ``(B,)``.

    Each batch is gathered from the ``uint8`` images ``x``, normalised with
    :func:`normalize` (``mean`` from :func:`per_pixel_mean`; None only scales to [0, 1]),
    augmented with :func:`crop_flip` when ``augment``, and moved to ``device``
    ('cpu' or 'gpu', via :func:`minires.backend.to_device`). The last batch is smaller
    unless ``drop_last``.

    Randomness and resuming: this call (not the first ``next``) draws the whole epoch
    from ``rng``, in this order: ``rng.permutation(N)`` if ``shuffle``; then, if
    ``augment``, the crop rows, crop columns and flips of all ``N`` positions
    (:func:`draw_crop_flip`). So an epoch is fully determined by
    ``rng.bit_generator.state`` just before the call, and the rng ends in the same state
    however many batches are consumed. To resume mid-epoch, restore that state and pass
    ``start_batch`` (the number of batches already done): the remaining batches are
    identical, bit for bit.
    """
    func = "iterate_batches"
    _check_images(func, x)
    _check_labels(func, x, y)
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"{func}: batch_size must be a positive int, got {batch_size!r}")
    if shuffle or augment:
        check_generator(func, rng)
    if mean is not None:
        _check_mean(func, mean, x.shape[1:])
    device = check_device(device)
    total = num_batches(len(x), batch_size, drop_last)
    if not 0 <= start_batch <= total:
        raise ValueError(f"{func}: start_batch must be in 0..{total}, got {start_batch}")

    n = len(x)
    order = rng.permutation(n) if shuffle else np.arange(n)
    crops = draw_crop_flip(rng, n, padding) if augment else None
    return _batches(x, y, order, crops, mean, batch_size, range(start_batch, total), device,
                    padding)


def _batches(x, y, order, crops, mean, batch_size, batch_indices, device, padding):
    """The generator behind :func:`iterate_batches` (all randomness is already drawn)."""
    for b in batch_indices:
        span = slice(b * batch_size, (b + 1) * batch_size)
        idx = order[span]
        xb = normalize(x[idx], mean)
        if crops is not None:
            xb = crop_flip(xb, *(a[span] for a in crops), padding)
        yb = y[idx].astype(np.int64)
        if device != "cpu":
            xb, yb = to_device(xb, device), to_device(yb, device)
        yield xb, yb


class Loader:
    """A re-iterable mini-batch loader, like ``torch.utils.data.DataLoader``.

    Each ``for xb, yb in loader`` is one epoch of :func:`iterate_batches`; ``len(loader)``
    is the number of batches per epoch. ``rng`` is a Generator or an int seed (a
    Generator is created once and advanced epoch after epoch). For checkpoints,
    ``state_dict()`` taken *before* an epoch, plus the number of batches done, is all
    that is needed: ``load_state_dict(state)`` then ``loader.epoch(start_batch=k)``.
    """

    def __init__(self, x, y, batch_size, *, shuffle=False, augment=False, mean=None,
                 drop_last=False, device="cpu", rng=None, padding=4):
        if rng is not None:
            rng = as_generator(rng, "Loader")
        batch_size = check_int("Loader", "batch_size", batch_size, minimum=1)  # once, when built
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.augment, self.mean = shuffle, augment, mean
        self.drop_last, self.device, self.rng, self.padding = drop_last, device, rng, padding
        _check_images("Loader", x)
        _check_labels("Loader", x, y)
        if (shuffle or augment) and rng is None:
            raise TypeError("Loader: shuffle/augment need rng (a seed or a Generator)")

    def __len__(self):
        return num_batches(len(self.x), self.batch_size, self.drop_last)

    def __iter__(self):
        return self.epoch()

    def epoch(self, start_batch=0):
        """One epoch's batches, skipping the first ``start_batch`` (see iterate_batches)."""
        return iterate_batches(
            self.x, self.y, self.batch_size, shuffle=self.shuffle, rng=self.rng,
            augment=self.augment, mean=self.mean, drop_last=self.drop_last,
            device=self.device, start_batch=start_batch, padding=self.padding)

    def state_dict(self):
        """``{'rng': bit-generator state}`` (a copy), or ``{'rng': None}`` without an rng."""
        return {"rng": None if self.rng is None else _copy_state(self.rng.bit_generator.state)}

    def load_state_dict(self, state):
        """Restore the rng saved by :meth:`state_dict`."""
        if state.get("rng") is not None:
            self.rng.bit_generator.state = state["rng"]


def _copy_state(state):
    """A deep copy of a bit-generator state dict (nested dicts of ints and arrays)."""
    return {k: _copy_state(v) if isinstance(v, dict) else
            (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}
