"""Where CIFAR-10 is: one function, one documented order.

:func:`find_or_download_cifar10` is the only way the library, the commands, the notebooks and the
tests reach the files. It looks, in this order:

1. ``data_dir`` when it is given (``--data-dir`` on the command line): an archive, a
   ``cifar-10-batches-py`` folder, or a folder holding either, under any archive name. It must
   exist and hold CIFAR-10; it is only read, never created or written.
2. ``$MINIRES_DATA_DIR`` when it is set: the same meaning, read-only.
3. The user cache, :func:`cache_dir` (``$XDG_CACHE_HOME/minires``, else ``~/.cache/minires``).
4. A download of the official archive (md5-checked) into the user cache, which is created only
   then; never when ``download=False`` or ``$MINIRES_OFFLINE=1`` (the tests set it).

When nothing is found the error gives the three ways forward (:func:`ways_forward`): put the
archive in the cache, point ``--data-dir`` or ``$MINIRES_DATA_DIR`` at one, or try things out on
``--dataset synthetic``.
"""
import os
from pathlib import Path

from .cifar10 import (
    BATCHES_DIRNAME,
    CIFAR10_FILENAME,
    CIFAR10_MD5,
    CIFAR10_SIZE,
    CIFAR10_URL,
    TRAIN_BATCHES,
    DatasetError,
    _ARCHIVE_SUFFIXES,
    _looks_like_cifar,
    download_cifar10,
)


class DataNotFoundError(FileNotFoundError):
    """No CIFAR-10 where the search looked (and no download was allowed); the message says what to do."""


def cache_dir():
    """The user cache for data sets: ``$XDG_CACHE_HOME/minires``, else ``~/.cache/minires``.

    The one folder minires creates: data sets are downloaded into it, and the conv autotuner
    keeps its table there (``autotune.json``, see ``minires.autotune.cache_path``).
    """
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "minires"


def offline():
    """True when ``$MINIRES_OFFLINE`` is set to anything but '' or '0': nothing is downloaded."""
    return os.environ.get("MINIRES_OFFLINE", "0") not in ("", "0")


def ways_forward(dest=None):
    """The three ways forward when no CIFAR-10 is found, as one paragraph for an error message."""
    dest = cache_dir() / CIFAR10_FILENAME if dest is None else dest
    return (f"Three ways forward: (1) download {CIFAR10_URL} ({CIFAR10_SIZE:,} bytes, md5 {CIFAR10_MD5}) "
            f"and put it at {dest}; (2) point --data-dir (data_dir= in Python) or $MINIRES_DATA_DIR at "
            f"a CIFAR-10 archive in the official layout, or at a folder holding one or "
            f"{BATCHES_DIRNAME}/; (3) try things out without any files: --dataset synthetic "
            "(minires.data.synthetic_cifar in Python).")


def find_cifar10(where):
    """Where CIFAR-10 lies in ``where`` (a path), or None when it holds none.

    ``where`` may be an archive file, a ``cifar-10-batches-py`` directory, or a directory holding
    one of these. Looked for in this order: an existing file as given; the batches directory
    itself; ``where/cifar-10-batches-py/``; ``where/cifar-10-python.tar.gz``; the one
    ``*.tar.gz`` / ``*.tgz`` / ``*.tar`` in ``where`` whose first member lies under
    ``cifar-10-batches-py/`` (an archive under another name). Several such archives are an
    error: say which one you mean.
    """
    root = Path(where).expanduser()
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
    """Path to CIFAR-10 for :func:`load_cifar10`: found in the module's order, else downloaded.

    ``data_dir`` (else ``$MINIRES_DATA_DIR``) names where the data is and is only read: a missing
    path or one without CIFAR-10 raises :class:`DataNotFoundError`. Without either, the user
    cache is searched, and the official archive downloaded into it when ``download`` is true and
    ``$MINIRES_OFFLINE`` is not set; otherwise :class:`DataNotFoundError` says what to do.
    """
    if data_dir is not None:
        return _given(Path(data_dir).expanduser(), "data_dir (--data-dir)")
    if os.environ.get("MINIRES_DATA_DIR"):
        return _given(Path(os.environ["MINIRES_DATA_DIR"]).expanduser(), "$MINIRES_DATA_DIR")
    cache = cache_dir()
    found = find_cifar10(cache)
    if found is not None:
        return found
    if download and not offline():
        return download_cifar10(cache, progress=progress)
    why = "downloads are off ($MINIRES_OFFLINE is set)" if download else "download=False"
    raise DataNotFoundError(
        f"find_or_download_cifar10: no CIFAR-10 in the user cache {cache} and {why}. {ways_forward()}")


def _given(path, source):
    """The CIFAR-10 at a location the user named, or an error naming that location and its source."""
    if not path.exists():
        raise DataNotFoundError(
            f"find_or_download_cifar10: {source} is {path}, which does not exist (it is never "
            f"created: data is downloaded into the user cache {cache_dir()} only). {ways_forward()}")
    found = find_cifar10(path)
    if found is None:
        raise DataNotFoundError(
            f"find_or_download_cifar10: {source} is {path}, which holds no CIFAR-10 (looked for "
            f"{BATCHES_DIRNAME}/, {CIFAR10_FILENAME} and other archives in the official layout). "
            f"{ways_forward()}")
    return found
