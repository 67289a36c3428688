"""CIFAR-10 files: download them (md5-checked) and read them safely.

50,000 training and 10,000 test images, 32x32 RGB, 10 classes (Krizhevsky, 2009), as the paper
uses them (He et al. 2015, Sec. 4.2). Where the files are found: ``find.py``; what happens to the
images next: ``transforms.py`` (per-pixel mean, augmentation) and ``loader.py`` (splits,
mini-batches).

Typical use::

    path = find_or_download_cifar10()            # found, or downloaded once into the user cache
    x_train, y_train, x_test, y_test = load_cifar10(path, train_size=4000, test_size=1000)

Where the data comes from
    :func:`download_cifar10` fetches the official archive with ``urllib`` into the user cache
    (:func:`minires.data.find.cache_dir`), writing to a ``*.part`` file that is md5-checked
    and then renamed atomically, so a half-written or corrupt download is never loaded.
    :func:`load_cifar10` reads the archive in place with ``tarfile`` (no extraction).
    Local archives under another name, or with fewer images than the official file (the first
    images of each batch, as in a subset made for a course), are accepted: they are checked by
    *structure* instead of md5 -- every batch must be present, with ``uint8`` data of shape
    ``(N, 3072)`` and ``N`` labels in 0..9 -- and the gzip checksum is verified by reading the
    archive to its end. Only the downloader knows the official md5.

Pickle safety
    The batches are Python pickles, and unpickling runs whatever functions a pickle names.
    :class:`_BatchUnpickler` only lets through the few globals a CIFAR-10 batch needs to
    rebuild a NumPy array, so a malicious file raises ``pickle.UnpicklingError`` instead
    of running code.
"""
import codecs
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import zlib
from pathlib import Path

import numpy as np

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

    ``root`` defaults to the user cache (:func:`minires.data.find.cache_dir`), the only folder
    minires creates for data, and only here; ``url`` and ``md5`` default to
    :data:`CIFAR10_URL` and :data:`CIFAR10_MD5` (read at call time, so tests can point
    them at a local file). The bytes go to a uniquely named ``*.part`` file beside the
    target, are md5-checked, and the file is renamed into place atomically, so neither a
    crash nor two parallel downloads leave a half-written archive under the final name.
    A failed or corrupt download is deleted and raises :class:`DownloadError` saying
    where to put a manually downloaded copy. A file already at the target is returned
    when its md5 matches and is an error otherwise (it is not ours to delete).
    """
    from .find import cache_dir, ways_forward  # find.py imports this module at its top

    root = cache_dir() if root is None else Path(root).expanduser()
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
    created = [d for d in (root, *root.parents) if not d.exists()]  # removed again if this fails
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
        for d in created:  # deepest first: a failed download leaves no empty cache folder behind
            try:
                d.rmdir()
            except OSError:  # something else was put there meanwhile: not ours to remove
                break
        if isinstance(exc, DownloadError) or not isinstance(exc, Exception):
            raise  # our own message, or Ctrl-C / SystemExit: pass through unchanged
        raise DownloadError(
            f"download_cifar10: could not download CIFAR-10 from {url} ({exc}). "
            + ways_forward(dest)) from exc
    return dest


def _fetch(url, out, progress, timeout):
    """Stream ``url`` into the open file ``out``; return the md5 hex digest of the bytes."""
    import urllib.request  # here, not at the top: it costs ~20 ms of every `import minires`

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

def load_cifar10(path, train_size=None, test_size=None):
    """Load CIFAR-10 as ``(x_train, y_train, x_test, y_test)``.

    ``path`` is an archive (``.tar.gz`` or ``.tar`` in the official layout, read in place),
    a ``cifar-10-batches-py`` directory, or a directory holding one. Images are ``uint8``
    of shape ``(N, 3, 32, 32)`` (channels R, G, B), labels ``int64`` in 0..9, both in the
    official order (``data_batch_1`` ... ``data_batch_5``; ``test_batch``).

    ``train_size`` / ``test_size`` keep only the first that many images of each part, in that
    order: ``load_cifar10(path, 4000, 1000)`` is the learner's subset
    (:data:`minires.data.SAMPLE_SUBSET`), the same images from the official archive or from a
    copy of just those images. Asking for more images than the files hold is an error.

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
    x_train, y_train = _first(path, "train_size", "training", x_train, y_train, train_size)
    x_test, y_test = _first(path, "test_size", "test", x_test, y_test, test_size)
    return x_train, y_train, x_test, y_test


def _first(path, name, part, x, y, size):
    """The first ``size`` images and labels (all of them for None), or an error saying how many there are."""
    if size is None:
        return x, y
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"load_cifar10: {name} must be a positive int or None, got {size!r}")
    if size > len(x):
        raise DatasetError(f"load_cifar10: {name}={size} asks for more {part} images than {path} "
                           f"holds ({len(x):,})")
    return x[:size].copy(), y[:size].copy()  # a copy: the rest of the set is freed


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
