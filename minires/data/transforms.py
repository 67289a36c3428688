"""The paper's preprocessing and augmentation, on uint8 NumPy images (N, C, H, W).

He et al. (2015), Sec. 4.2: "The network inputs are 32x32 images, with the per-pixel mean
subtracted" (:func:`per_pixel_mean`, :func:`normalize`). "4 pixels are padded on each side, and
a 32x32 crop is randomly sampled from the padded image or its horizontal flip. For testing, we
only evaluate the single view of the original 32x32 image" (:func:`random_crop_flip`; its
deterministic part :func:`crop_flip`, its random part :func:`draw_crop_flip`).
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._checks import check_generator
from ..backend import get_array_module


def _check_images(func, x, name="x", dtypes=(np.uint8,)):
    """Raise a clear error unless ``x`` is a 4-D NumPy array (N, C, H, W) of ``dtypes``."""
    if get_array_module(x) is not np or not isinstance(x, np.ndarray):
        raise TypeError(
            f"{func}: {name} must be a NumPy array (the data pipeline runs on the CPU; use "
            f"device='gpu' to move batches), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{func}: {name} must have shape (N, C, H, W), got shape {x.shape}")
    if x.dtype not in dtypes:
        raise TypeError(f"{func}: {name} must have dtype "
                        f"{' or '.join(str(np.dtype(d)) for d in dtypes)}, got {x.dtype}")


def per_pixel_mean(x):
    r"""The mean training image, :math:`\mu_{c,h,w} = \frac1N \sum_n x_{n,c,h,w}`.

    ``x`` is ``uint8`` images ``(N, C, H, W)``; the result is ``float32`` ``(C, H, W)`` in
    pixel units (0..255). The sum is accumulated in float64 (a float32 sum of 50,000
    values loses digits) and only the result is cast to float32.
    """
    _check_images("per_pixel_mean", x, dtypes=(np.uint8, np.float32, np.float64))
    if x.shape[0] == 0:
        raise ValueError("per_pixel_mean: x holds no images")
    return x.mean(axis=0, dtype=np.float64).astype(np.float32)


def normalize(x, mean=None):
    r"""``uint8`` images to the network's ``float32`` input: :math:`(x - \mu) / 255`.

    The paper subtracts the per-pixel mean :math:`\mu` (:func:`per_pixel_mean`); we also
    divide by 255 so inputs are of order 1 -- a constant scale that the first conv and
    BatchNorm absorb, and the usual choice (``ToTensor`` in torchvision). With
    ``mean=None`` the images are only scaled to [0, 1].
    """
    _check_images("normalize", x)
    out = x.astype(np.float32)
    if mean is not None:
        _check_mean("normalize", mean, x.shape[1:])
        out -= mean
    out /= np.float32(255)
    return out


def _check_mean(func, mean, image_shape):
    if not isinstance(mean, np.ndarray) or mean.dtype != np.float32:
        got = mean.dtype if isinstance(mean, np.ndarray) else type(mean).__name__
        raise TypeError(f"{func}: mean must be a float32 NumPy array (use per_pixel_mean), "
                        f"got {got}")
    if mean.shape != tuple(image_shape):
        raise ValueError(f"{func}: mean has shape {mean.shape} but the images are "
                         f"{tuple(image_shape)}")


def crop_flip(x, rows, cols, flip, padding=4):
    """Zero-pad ``x`` by ``padding`` pixels, crop each image at its offset, mirror some.

    For image ``n``, the output is the ``H x W`` window of the padded image whose top-left
    corner is ``(rows[n], cols[n])`` (each in ``0 .. 2*padding``; ``padding`` means no
    shift), flipped left-right where ``flip[n]``. Deterministic: the random part is in
    :func:`random_crop_flip`. Vectorised: ``sliding_window_view`` gives every window as a
    view, and one fancy-index picks each image's window.
    """
    _check_images("crop_flip", x, dtypes=(np.float32, np.float64, np.uint8))
    n, c, h, w = x.shape
    rows, cols, flip = np.asarray(rows), np.asarray(cols), np.asarray(flip, dtype=bool)
    for name, a in (("rows", rows), ("cols", cols), ("flip", flip)):
        if a.shape != (n,):
            raise ValueError(f"crop_flip: {name} must have shape ({n},), got {a.shape}")
    if n and (min(rows.min(), cols.min()) < 0 or max(rows.max(), cols.max()) > 2 * padding):
        raise ValueError(f"crop_flip: offsets must be in 0..{2 * padding} for padding={padding}")
    padded = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
    padded[:, :, padding:padding + h, padding:padding + w] = x
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (n, c, 2p+1, 2p+1, h, w)
    out = windows[np.arange(n), :, rows, cols]                 # (n, c, h, w), a copy
    out[flip] = out[flip, :, :, ::-1]
    return out


def draw_crop_flip(rng, n, padding=4):
    """Random ``(rows, cols, flip)`` for :func:`crop_flip`, drawn from ``rng`` in that order.

    Offsets are uniform over the ``(2*padding + 1)**2`` crops, flips have probability 1/2.
    """
    rows = rng.integers(0, 2 * padding + 1, size=n)
    cols = rng.integers(0, 2 * padding + 1, size=n)
    flip = rng.random(n) < 0.5
    return rows, cols, flip


def random_crop_flip(x, rng, padding=4):
    """The paper's augmentation: pad 4, random 32x32 crop, random horizontal flip.

    Apply it to normalised (mean-subtracted) images, as fb.resnet.torch does, so the
    padding zeros are the mean image rather than black. ``rng`` is a
    ``numpy.random.Generator``; the same state gives the same result.
    """
    check_generator("random_crop_flip", rng)
    return crop_flip(x, *draw_crop_flip(rng, len(x), padding), padding)
