"""A tiny CIFAR-10 archive in the official format, made on the spot: no files from outside the
repository, no network.

``write_cifar_archive(folder)`` writes ``cifar-10-python.tar.gz`` as the official archive is laid
out: ``cifar-10-batches-py/`` with ``data_batch_1`` ... ``data_batch_5``, ``test_batch`` and
``batches.meta``, each a protocol-2 pickle of a dict (``batch_label``, ``labels``, ``data`` as a
``uint8`` array of shape ``(N, 3072)``: 1024 red, 1024 green, 1024 blue values, ``filenames``),
gzipped. Its images are a class prototype plus noise, so that a few training steps on it learn
something. It shares no code with ``minires.data``: the loader is checked against an independent
writer.
"""
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: Images per training batch (5 batches) and in the test batch: 500 training and 100 test images.
PER_BATCH, TEST_IMAGES = 100, 100


def _images(rng, prototypes, n):
    labels = rng.integers(0, len(CLASSES), size=n)
    noise = rng.normal(0, 40, size=(n, 3072))
    data = np.clip(np.rint(prototypes[labels] + noise), 0, 255).astype(np.uint8)
    return data, [int(v) for v in labels]


def _member(name, obj):
    raw = pickle.dumps(obj, protocol=2)  # the official batches are protocol-2 pickles
    info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
    info.size, info.mode = len(raw), 0o644
    return info, io.BytesIO(raw)


def write_cifar_archive(folder, seed=0, name="cifar-10-python.tar.gz"):
    """Write the archive into ``folder``; return ``(path, md5, (x_train, y_train, x_test, y_test))``
    with the images as ``(N, 3, 32, 32)`` uint8 and the labels as int64, in the official order."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(40, 216, size=(len(CLASSES), 3072))
    batches = {f"data_batch_{i}": _images(rng, prototypes, PER_BATCH) for i in range(1, 6)}
    batches["test_batch"] = _images(rng, prototypes, TEST_IMAGES)
    path = Path(folder) / name
    with tarfile.open(path, "w:gz") as tar:
        for batch, (data, labels) in batches.items():
            tar.addfile(*_member(batch, {"batch_label": f"{batch} (generated for the tests)", "labels": labels,
                                         "data": data, "filenames": [f"{batch}_{i}.png" for i in range(len(data))]}))
        tar.addfile(*_member("batches.meta", {"label_names": list(CLASSES), "num_cases_per_batch": PER_BATCH,
                                              "num_vis": 3072}))
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    arrays = (np.concatenate([d for d, _ in train]).reshape(-1, 3, 32, 32),
              np.array(sum((labels for _, labels in train), []), dtype=np.int64),
              batches["test_batch"][0].reshape(-1, 3, 32, 32),
              np.array(batches["test_batch"][1], dtype=np.int64))
    return path, hashlib.md5(path.read_bytes()).hexdigest(), arrays
