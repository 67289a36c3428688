"""CIFAR-10: download, safe loading, preprocessing, augmentation and mini-batches.

This is the data pipeline of the CIFAR-10 experiments in He et al. (2015), Sec. 4.2:

* 50,000 training and 10,000 test images, 32x32 RGB, 10 classes. For the study of
  hyper-parameters the paper trains on 45k images and validates on the other 5k
  (:func:`train_val_split`).
* "The network inputs are 32x32 images, with the per-pixel mean subtracted"
  (:func:`per_pixel_mean`, :func:`normalize`).
* "4 pixels are padded on each side, and a 32x32 crop is randomly sampled from the padded
  image or its horizontal flip. For testing, we only evaluate the single view of the
  original 32x32 image" (:func:`random_crop_flip`; :func:`iterate_batches` with
  ``augment=False`` for testing).

Everything here runs in NumPy on the CPU. Images stay ``uint8`` until a mini-batch is
drawn; a batch is turned into ``float32``, augmented, and only then moved to the GPU
(``device='gpu'``), so the 150 MB training set never has to live on the GPU.

Typical use::

    path = find_or_download_cifar10()            # cache dir, downloads once
    x_train, y_train, x_test, y_test = load_cifar10(path)
    mean = per_pixel_mean(x_train)
    loader = Loader(x_train, y_train, 128, shuffle=True, augment=True, mean=mean, rng=0)
    for epoch in range(epochs):
        for xb, yb in loader:                    # xb float32 (B,3,32,32), yb int64 (B,)
            ...

Where the data comes from
    :func:`download_cifar10` fetches the official archive with ``urllib`` into a cache
    directory (:func:`default_data_dir`), writing to a ``*.part`` file that is md5-checked
    and then renamed atomically, so a half-written or corrupt download is never loaded.
    :func:`load_cifar10` reads the archive in place with ``tarfile`` (no extraction).
    Local archives that are not the official file (such as the 5,000-image sample the
    tests use) are accepted: they are checked by *structure* instead of md5 -- every batch
    must be present, with ``uint8`` data of shape ``(N, 3072)`` and ``N`` labels in 0..9 --
    and the gzip checksum is verified by reading the archive to its end. Only the
    downloader knows the official md5.

Pickle safety
    The batches are Python pickles, and unpickling runs whatever functions a pickle names.
    :class:`_BatchUnpickler` only lets through the few globals a CIFAR-10 batch needs to
    rebuild a NumPy array, so a malicious file raises ``pickle.UnpicklingError`` instead
    of running code.

Reproducibility
    All randomness comes from a ``numpy.random.Generator`` passed in. Each call of
    :func:`iterate_batches` draws the whole epoch's randomness at once, in a fixed order,
    so the state of an epoch is just ``rng.bit_generator.state`` before the call: restore
    it and pass ``start_batch`` to resume a run mid-epoch bit for bit.
"""
import codecs
import gzip
import hashlib
import io
import math
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from minires.backend import check_device, get_array_module, to_device

# --------------------------------------------------------------------------- constants

#: The official archive (Krizhevsky, 2009). Tests point these elsewhere.
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FILENAME = "cifar-10-python.tar.gz"
CIFAR10_SIZE = 170_498_071  # bytes, for the messages

#: Class names, in label order (label 3 is 'cat').
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

BATCHES_DIRNAME = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
_BATCH_NAMES = TRAIN_BATCHES + (TEST_BATCH,)
IMAGE_SHAPE = (3, 32, 32)
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class DatasetError(ValueError):
    """A CIFAR-10 archive or batch file is incomplete, truncated or malformed."""


class DownloadError(RuntimeError):
    """Downloading the CIFAR-10 archive failed (offline, HTTP error, md5 mismatch)."""


# --------------------------------------------------------------------------- locating

def default_data_dir():
    """The cache directory for datasets.

    ``$MINIRES_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/minires``, else
    ``~/.cache/minires``.
    """
    explicit = os.environ.get("MINIRES_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "minires"


def find_cifar10(data_dir=None):
    """Where CIFAR-10 lies under ``data_dir`` (default :func:`default_data_dir`), or None.

    ``data_dir`` may be an archive file, a ``cifar-10-batches-py`` directory, or a
    directory holding one of these. Looked for in this order: an existing file as given;
    the batches directory itself; ``data_dir/cifar-10-batches-py/``;
    ``data_dir/cifar-10-python.tar.gz``; the one ``*.tar.gz`` / ``*.tgz`` / ``*.tar``
    in ``data_dir`` whose first member lies under ``cifar-10-batches-py/`` (for example
    the sample ``cifar-10-sample-python.tar.gz``). Several such archives are an error:
    say which one you mean.
    """
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    if root.is_file():
        return root
    if not root.is_dir():
        return None
    if (root / TRAIN_BATCHES[0]).is_file():
        return root
    if (root / BATCHES_DIRNAME).is_dir():
        return root / BATCHES_DIRNAME
    if (root / CIFAR10_FILENAME).is_file():
        return root / CIFAR10_FILENAME
    candidates = [p for p in sorted(root.iterdir())
                  if p.is_file() and p.name.endswith(_ARCHIVE_SUFFIXES) and _looks_like_cifar(p)]
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise DatasetError(
            f"find_cifar10: {root} holds several CIFAR-10 archives ({names}); "
            "pass the one you want as a file path")
    return candidates[0] if candidates else None


def find_or_download_cifar10(data_dir=None, download=True, *, progress=True):
    """Path to CIFAR-10 for :func:`load_cifar10`, downloading it only when none is found.

    ``data_dir`` is searched as :func:`find_cifar10` describes (default: the cache
    directory). When nothing is there and ``download`` is true, the official archive is
    downloaded into ``data_dir`` (which must then be a directory, created if needed);
    otherwise ``FileNotFoundError`` says where to put the archive.
    """
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    found = find_cifar10(root)
    if found is not None:
        return found
    if root.name.endswith(_ARCHIVE_SUFFIXES):
        raise FileNotFoundError(
            f"find_or_download_cifar10: the archive {root} does not exist. Download "
            f"{CIFAR10_URL} and put it there, or pass the directory to download into.")
    if not download:
        raise FileNotFoundError(
            f"find_or_download_cifar10: no CIFAR-10 found in {root} (looked for "
            f"{BATCHES_DIRNAME}/, {CIFAR10_FILENAME} and *.tar.gz archives in the official "
            f"layout). Download {CIFAR10_URL} and put it at {root / CIFAR10_FILENAME}, "
            "or allow download=True.")
    return download_cifar10(root, progress=progress)


def _looks_like_cifar(path):
    """True when the first member of the tar archive ``path`` is under cifar-10-batches-py/.

    Reads only the first header, so it is cheap even for the 170 MB archive.
    """
    try:
        with tarfile.open(path, "r:*") as tar:
            first = tar.next()
    except (tarfile.TarError, OSError, EOFError, zlib.error):
        return False
    return first is not None and _normalise_member(first.name).split("/")[0] == BATCHES_DIRNAME


# --------------------------------------------------------------------------- downloading

def download_cifar10(root=None, *, url=None, md5=None, progress=True, timeout=60.0):
    """Download the official CIFAR-10 archive into ``root`` and return its path.

    ``root`` defaults to :func:`default_data_dir`; ``url`` and ``md5`` default to
    :data:`CIFAR10_URL` and :data:`CIFAR10_MD5` (read at call time, so tests can point
    them at a local file). The bytes go to a uniquely named ``*.part`` file beside the
    target, are md5-checked, and the file is renamed into place atomically, so neither a
    crash nor two parallel downloads leave a half-written archive under the final name.
    A failed or corrupt download is deleted and raises :class:`DownloadError` saying
    where to put a manually downloaded copy. A file already at the target is returned
    when its md5 matches and is an error otherwise (it is not ours to delete).
    """
    root = default_data_dir() if root is None else Path(root).expanduser()
    url = CIFAR10_URL if url is None else url
    md5 = CIFAR10_MD5 if md5 is None else md5
    dest = root / CIFAR10_FILENAME
    if dest.is_file():
        got = _md5_of_file(dest)
        if got == md5:
            return dest
        raise DownloadError(
            f"download_cifar10: {dest} already exists but its md5 is {got}, expected {md5}: "
            "it is incomplete or not the official archive. Delete it to download it again.")
    root.mkdir(parents=True, exist_ok=True)
    fd, part_name = tempfile.mkstemp(dir=root, prefix=CIFAR10_FILENAME + ".", suffix=".part")
    part = Path(part_name)
    try:
        with os.fdopen(fd, "wb") as out:
            got = _fetch(url, out, progress, timeout)
        if got != md5:
            raise DownloadError(
                f"download_cifar10: the file downloaded from {url} has md5 {got}, expected "
                f"{md5} (an incomplete or corrupted download); it was deleted. Try again, or "
                f"download it yourself and put it at {dest}.")
        os.chmod(part, 0o644)  # mkstemp makes it private; a cache file can be readable
        os.replace(part, dest)
    except BaseException as exc:
        part.unlink(missing_ok=True)
        if isinstance(exc, DownloadError) or not isinstance(exc, Exception):
            raise  # our own message, or Ctrl-C / SystemExit: pass through unchanged
        raise DownloadError(
            f"download_cifar10: could not download CIFAR-10 from {url} ({exc}). "
            f"If this machine is offline, download the archive elsewhere and put it at {dest} "
            f"(it is {CIFAR10_FILENAME}, {CIFAR10_SIZE:,} bytes, md5 {CIFAR10_MD5}), or pass "
            "its location as data_dir (--data-dir on the command line).") from exc
    return dest


def _fetch(url, out, progress, timeout):
    """Stream ``url`` into the open file ``out``; return the md5 hex digest of the bytes."""
    digest = hashlib.md5(usedforsecurity=False)
    with urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        bar = _progress_bar(int(length) if length else None) if progress else None
        try:
            while True:
                chunk = response.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    return digest.hexdigest()


def _progress_bar(total):
    """A tqdm byte counter, or None when tqdm is not installed (it is optional)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="CIFAR-10")


def _md5_of_file(path):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- loading

def load_cifar10(path):
    """Load CIFAR-10 as ``(x_train, y_train, x_test, y_test)``.

    ``path`` is an archive (``.tar.gz`` or ``.tar`` in the official layout, read in place),
    a ``cifar-10-batches-py`` directory, or a directory holding one. Images are ``uint8``
    of shape ``(N, 3, 32, 32)`` (channels R, G, B), labels ``int64`` in 0..9, both in the
    official order (``data_batch_1`` ... ``data_batch_5``; ``test_batch``).
    Raises :class:`DatasetError` naming the file and the problem for a missing batch, a
    truncated archive or bad shapes, and ``pickle.UnpicklingError`` for a pickle that
    references anything but NumPy array reconstruction.
    """
    path = Path(path).expanduser()
    if path.is_file():
        batches = _read_archive(path)
    elif path.is_dir():
        batches = _read_batches_dir(path / BATCHES_DIRNAME if (path / BATCHES_DIRNAME).is_dir()
                                    else path)
    else:
        raise FileNotFoundError(f"load_cifar10: {path} does not exist")
    x_train = np.concatenate([batches[name][0] for name in TRAIN_BATCHES])
    y_train = np.concatenate([batches[name][1] for name in TRAIN_BATCHES])
    x_test, y_test = batches[TEST_BATCH]
    return x_train, y_train, x_test, y_test


def _read_archive(path):
    """The six batches of the tar archive ``path``, as ``{name: (x, y)}``.

    The archive is read once, front to back, in streaming mode, and then to its very end:
    gzip checks its CRC and length only there, and tarfile on its own stops quietly at a
    damaged header, so this is what turns a truncated download into an error.
    """
    found = {}
    try:
        with _open_archive_stream(path) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                folder, _, batch = _normalise_member(member.name).partition("/")
                if folder != BATCHES_DIRNAME or batch not in _BATCH_NAMES:
                    continue
                source = f"{path}: {member.name}"
                if not member.isfile():
                    raise DatasetError(f"load_cifar10: {source} is not a regular file")
                found[batch] = _parse_batch(tar.extractfile(member).read(), source)
            while raw.read(1 << 20):  # to the end, so that gzip verifies its checksum
                pass
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise DatasetError(
            f"load_cifar10: {path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
            "delete it and download it again") from exc
    missing = [f"{BATCHES_DIRNAME}/{name}" for name in _BATCH_NAMES if name not in found]
    if missing:
        raise DatasetError(
            f"load_cifar10: {path} lacks {', '.join(missing)}; a CIFAR-10 archive holds "
            f"{BATCHES_DIRNAME}/ with {', '.join(_BATCH_NAMES)}")
    return found


def _open_archive_stream(path):
    """A binary file object with the tar bytes of ``path``: gunzipped if it is gzip."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _normalise_member(name):
    """'./cifar-10-batches-py/x' -> 'cifar-10-batches-py/x'."""
    while name.startswith("./"):
        name = name[2:]
    return name


def _read_batches_dir(directory):
    """The six batches of an extracted ``cifar-10-batches-py`` directory."""
    missing = [name for name in _BATCH_NAMES if not (directory / name).is_file()]
    if missing:
        raise DatasetError(
            f"load_cifar10: {directory} lacks {', '.join(missing)}; a CIFAR-10 directory "
            f"({BATCHES_DIRNAME}/) holds {', '.join(_BATCH_NAMES)}")
    return {name: _parse_batch((directory / name).read_bytes(), str(directory / name))
            for name in _BATCH_NAMES}


# --------------------------------------------------------------------------- safe unpickling

def _latin1_encode(text, encoding):
    """``_codecs.encode`` restricted to the one use in NumPy pickles: str -> bytes, latin-1.

    Python 3 writes the raw bytes of an array into a protocol-2 pickle as
    ``_codecs.encode(text, 'latin1')``.
    """
    if encoding not in ("latin1", "latin-1", "iso-8859-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(
            f"_codecs.encode is only allowed as encode(str, 'latin1'), got encoding {encoding!r}")
    return codecs.encode(text, "latin1")


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # NumPy >= 2
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# Every global the official batches and the sample reference (checked with pickletools):
# NumPy's array reconstruction, under its NumPy 1 and NumPy 2 module names.
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle referenced a global outside the allow-list (never wrapped in DatasetError)."""


class _BatchUnpickler(pickle.Unpickler):
    """An Unpickler that can only rebuild NumPy arrays, dicts, lists, str and numbers.

    A pickle calls functions by naming them (``GLOBAL 'posix system'`` then ``REDUCE``);
    every such name passes through :meth:`find_class`, so refusing all names but the
    ones above means a crafted file cannot run code. ``encoding='latin1'`` is what
    NumPy documents for Python-2 pickles of arrays; it turns the batch's keys into str.
    """

    def __init__(self, file, source):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module, name):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise _ForbiddenGlobal(
                f"load_cifar10: {self.source} references the global '{module}.{name}', which "
                "a CIFAR-10 batch never contains; refusing to unpickle it (only NumPy array "
                "reconstruction is allowed)") from None


def _parse_batch(data, source):
    """Unpickle one batch (bytes) and check its structure; return ``(x, y)``."""
    try:
        batch = _BatchUnpickler(io.BytesIO(data), source).load()
    except _ForbiddenGlobal:
        raise
    except Exception as exc:  # corrupt pickles raise many kinds of errors
        raise DatasetError(
            f"load_cifar10: {source} is not a readable CIFAR-10 batch pickle "
            f"({type(exc).__name__}: {exc})") from exc
    return _check_batch(batch, source)


def _check_batch(batch, source):
    """``(x uint8 (N,3,32,32), y int64 (N,))`` from an unpickled batch dict, or DatasetError."""
    if not isinstance(batch, dict):
        raise DatasetError(f"load_cifar10: {source} holds a {type(batch).__name__}, "
                           "expected a dict with 'data' and 'labels'")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", "labels"):
        if key not in batch:
            raise DatasetError(f"load_cifar10: {source} has no {key!r} entry "
                               f"(keys: {sorted(map(str, batch))})")
    data, labels = batch["data"], batch["labels"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072):
        got = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise DatasetError(f"load_cifar10: {source}: 'data' must be a uint8 array of shape "
                           f"(N, 3072), got a {got}")
    n = data.shape[0]
    if not (isinstance(labels, (list, tuple))
            and all(isinstance(v, int) and not isinstance(v, bool) for v in labels)):
        raise DatasetError(f"load_cifar10: {source}: 'labels' must be a list of ints, "
                           f"got {type(labels).__name__}")
    if len(labels) != n:
        raise DatasetError(f"load_cifar10: {source}: {len(labels)} labels for {n} images")
    y = np.array(labels, dtype=np.int64)
    bad = y[(y < 0) | (y >= len(CIFAR10_CLASSES))]
    if bad.size:
        raise DatasetError(f"load_cifar10: {source}: labels must be in 0..9, found "
                           f"{np.unique(bad)[:5].tolist()}")
    return data.reshape((n,) + IMAGE_SHAPE), y


# --------------------------------------------------------------------------- synthetic data

def synthetic_cifar(n_train=2000, n_test=500, seed=0, *, noise_std=50.0):
    """A CIFAR-shaped toy dataset for smoke runs and tests: no files needed.

    Returns ``(x_train, y_train, x_test, y_test)`` like :func:`load_cifar10` (uint8
    ``(N,3,32,32)``, int64 labels, classes balanced). Each class has a prototype: a 4x4
    grid of random colours blown up to 32x32 and mirrored left-right (so horizontal flips
    keep the class); an image is its class prototype plus Gaussian noise of std
    ``noise_std`` (in 0..255 units), rounded and clipped. Averaged over 8x8 blocks the
    noise is small, so a network learns the labels within a few hundred steps.
    """
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"synthetic_cifar: {name} must be a non-negative int, got {n!r}")
    rng = np.random.default_rng(seed)
    classes = len(CIFAR10_CLASSES)
    half = rng.uniform(48, 208, size=(classes, 3, 4, 2)).astype(np.float32)
    grid = np.concatenate([half, half[..., ::-1]], axis=-1)           # (10, 3, 4, 4)
    prototypes = grid.repeat(8, axis=2).repeat(8, axis=3)             # (10, 3, 32, 32)

    def sample(n):
        y = rng.permutation(np.arange(n) % classes).astype(np.int64)
        noise = rng.standard_normal((n,) + IMAGE_SHAPE, dtype=np.float32) * np.float32(noise_std)
        x = np.clip(np.rint(prototypes[y] + noise), 0, 255).astype(np.uint8)
        return x, y

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return x_train, y_train, x_test, y_test


# --------------------------------------------------------------------------- preprocessing

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
    _check_generator("random_crop_flip", rng)
    return crop_flip(x, *draw_crop_flip(rng, len(x), padding), padding)


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
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    perm = rng.permutation(n)
    val, train = np.sort(perm[:k]), np.sort(perm[k:])
    return x[train], y[train], x[val], y[val]


# --------------------------------------------------------------------------- batching

def _check_generator(func, rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{func}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}; a fresh seed per call would repeat every epoch")


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
        _check_generator(func, rng)
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
        if rng is not None and not isinstance(rng, np.random.Generator):
            rng = np.random.default_rng(rng)
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
