"""Shared fixtures: the ``device`` fixture runs a test on NumPy and, when a GPU answers, on CuPy;
``cifar_archive`` a tiny CIFAR-10 archive in the official format; ``genuine_data`` marks the tests
that need genuine CIFAR-10 images (from ``$MINIRES_DATA_DIR``)."""
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from minires import gpu_available

from cifar_archive import write_cifar_archive

# The tests never touch the network: nothing is downloaded, in this process or in the commands and
# notebooks it starts (they inherit the variable). The downloader's own tests use file:// URLs.
os.environ["MINIRES_OFFLINE"] = "1"

# conv2d's "auto" follows its fixed rule, for determinism: no timing decides a test's kernels.
# `MINIRES_AUTOTUNE=1 python -m pytest` runs the suite with timing on; its choices then go to a
# file of this session, never to the user's cache.
os.environ.setdefault("MINIRES_AUTOTUNE", "0")
os.environ.setdefault("MINIRES_AUTOTUNE_CACHE", os.path.join(tempfile.mkdtemp(prefix="minires-autotune-"), "autotune.json"))

# Gradient checks are slow per example; a fixed, modest budget keeps the suite fast and stable.
settings.register_profile(
    "minires", max_examples=int(os.environ.get("MINIRES_HYPOTHESIS_EXAMPLES", "20")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("minires")

GPU_SKIP_REASON = "no GPU: CuPy is not installed or no CUDA device answers"

DEVICES = [
    "cpu",
    pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason=GPU_SKIP_REASON)]),
]

#: Genuine CIFAR-10 images (the official archive, or a copy of its first images): where
#: $MINIRES_DATA_DIR points, else None. CI runs the ``genuine_data`` tests alone with it set.
GENUINE_DATA = Path(os.environ["MINIRES_DATA_DIR"]) if os.environ.get("MINIRES_DATA_DIR") else None
GENUINE_SKIP_REASON = ("needs genuine CIFAR-10 images: set MINIRES_DATA_DIR to the official archive (or to a "
                       "copy of its first 4,000 training and 1,000 test images) to run it")


def pytest_collection_modifyitems(config, items):
    """``genuine_data`` tests skip, with the reason, when no genuine data is configured."""
    if GENUINE_DATA is None:
        skip = pytest.mark.skip(reason=GENUINE_SKIP_REASON)
        for item in items:
            if "genuine_data" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(params=DEVICES)
def device(request):
    """'cpu' or 'gpu': move inputs with ``Tensor(...).to(device)`` or ``minires.backend.to_device``."""
    return request.param


@pytest.fixture(scope="session")
def cifar_archive(tmp_path_factory):
    """``(folder, path, md5, arrays)``: a tiny CIFAR-10 archive (500 training, 100 test images) in the
    official format, as ``cifar-10-python.tar.gz`` in a folder of its own (tests/cifar_archive.py)."""
    folder = tmp_path_factory.mktemp("cifar")
    path, md5, arrays = write_cifar_archive(folder)
    return folder, path, md5, arrays


@pytest.fixture
def no_data(monkeypatch, tmp_path):
    """No CIFAR-10 anywhere: $MINIRES_DATA_DIR unset and an empty user cache (in tmp_path)."""
    monkeypatch.delenv("MINIRES_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-home"))
    return tmp_path / "cache-home" / "minires"


@pytest.fixture
def tiny_data(monkeypatch, cifar_archive):
    """$MINIRES_DATA_DIR pointed at the tiny archive: training commands find it, nothing downloads."""
    monkeypatch.setenv("MINIRES_DATA_DIR", str(cifar_archive[0]))
    return cifar_archive


@pytest.fixture(autouse=True)
def learner_mode(monkeypatch):
    """Exercise checks return their result, as in the learner's notebook; they do not raise as in
    CI's run of the notebooks with the solutions (MINIRES_EXERCISES=solutions)."""
    monkeypatch.delenv("MINIRES_EXERCISES", raising=False)
