"""``minires.data``: the CIFAR-10 pipeline of He et al. (2015), Sec. 4.2, one job per file.

    find.py         where CIFAR-10 is: one function, one documented order (argument,
                    $MINIRES_DATA_DIR, the user cache, a download into the cache)
    cifar10.py      download (md5-checked) and safely load the official files, or their first N
    dataset.py      a data set as a run uses it: arrays, identity (name, subset, content hash)
    transforms.py   the per-pixel mean, normalisation and the paper's pad-crop-flip augmentation
    loader.py       the validation split, one epoch of mini-batches, ``Loader``
    synthetic.py    a CIFAR-shaped toy dataset that needs no files

Typical use::

    path = find_or_download_cifar10()            # found, or downloaded once into the user cache
    x_train, y_train, x_test, y_test = load_cifar10(path, *SAMPLE_SUBSET)   # the first 4,000 / 1,000
    mean = per_pixel_mean(x_train)
    loader = Loader(x_train, y_train, 128, shuffle=True, augment=True, mean=mean, rng=0)
    for epoch in range(epochs):
        for xb, yb in loader:                    # xb float32 (B,3,32,32), yb int64 (B,)
            ...
"""
from .cifar10 import (
    BATCHES_DIRNAME,
    CIFAR10_CLASSES,
    CIFAR10_FILENAME,
    CIFAR10_MD5,
    CIFAR10_SIZE,
    CIFAR10_URL,
    IMAGE_SHAPE,
    TEST_BATCH,
    TRAIN_BATCHES,
    DatasetError,
    DownloadError,
    download_cifar10,
    load_cifar10,
)
from .dataset import (
    SAMPLE_SHA256,
    SAMPLE_SUBSET,
    Dataset,
    content_hash,
    describe,
    identity_of,
    load_dataset,
)
from .find import DataNotFoundError, cache_dir, find_cifar10, find_or_download_cifar10, ways_forward
from .loader import Loader, iterate_batches, num_batches, train_val_split
from .synthetic import synthetic_cifar
from .transforms import crop_flip, draw_crop_flip, normalize, per_pixel_mean, random_crop_flip

__all__ = [
    "CIFAR10_URL", "CIFAR10_MD5", "CIFAR10_FILENAME", "CIFAR10_SIZE", "CIFAR10_CLASSES",
    "BATCHES_DIRNAME", "TRAIN_BATCHES", "TEST_BATCH", "IMAGE_SHAPE", "DatasetError", "DownloadError",
    "DataNotFoundError", "cache_dir", "ways_forward", "find_cifar10", "find_or_download_cifar10",
    "download_cifar10", "load_cifar10", "SAMPLE_SUBSET", "SAMPLE_SHA256", "Dataset", "content_hash",
    "describe", "identity_of", "load_dataset",
    "synthetic_cifar", "per_pixel_mean", "normalize", "crop_flip", "draw_crop_flip", "random_crop_flip",
    "train_val_split", "num_batches", "iterate_batches", "Loader",
]
