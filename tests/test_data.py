"""Tests for minires.data: finding the data, loading (generated, crafted and genuine archives),
subsets and identities, pickle safety, the downloader, preprocessing, augmentation, splitting,
batching and resuming."""
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from minires import data
from minires.data import cifar10
from conftest import GENUINE_DATA, GENUINE_SKIP_REASON
from minires.data import loader as data_loader
from minires.backend import gpu_available

# Class counts of the learner's subset (the first 4,000 training and 1,000 test images).
SAMPLE_TRAIN_COUNTS = [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]
SAMPLE_TEST_COUNTS = [103, 89, 100, 103, 90, 86, 112, 102, 106, 109]


# --------------------------------------------------------------------------- helpers

def make_batch(n, seed):
    """A batch dict in the official format, with known random content."""
    rng = np.random.default_rng(seed)
    return {"batch_label": f"batch {seed}",
            "labels": rng.integers(0, 10, size=n).tolist(),
            "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            "filenames": [f"img_{seed}_{i}.png" for i in range(n)]}


def good_batches(n=6):
    """{member name: batch dict} for all six batches (n images each)."""
    names = data.TRAIN_BATCHES + ("test_batch",)
    return {name: make_batch(n, seed) for seed, name in enumerate(names)}


def write_archive(path, members, gz=True):
    """Write ``{name: dict or raw bytes}`` as a tar(.gz) under cifar-10-batches-py/."""
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, content in members.items():
            raw = content if isinstance(content, bytes) else pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def md5_of(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def tiny_archive(tmp_path):
    batches = good_batches()
    return write_archive(tmp_path / "tiny.tar.gz", batches), batches


@pytest.fixture(scope="module")
def sample():
    """The learner's subset of the genuine data that $MINIRES_DATA_DIR points at."""
    if GENUINE_DATA is None:
        pytest.skip(GENUINE_SKIP_REASON)
    return data.load_dataset("cifar10", subset=data.SAMPLE_SUBSET)


# --------------------------------------------------------------------------- genuine images

def genuine_member(name):
    """The raw bytes of cifar-10-batches-py/<name> in the genuine data (an archive or a folder)."""
    path = data.find_or_download_cifar10()
    if path.is_dir():
        return (path / name).read_bytes()
    with tarfile.open(path) as tar:
        return tar.extractfile(f"cifar-10-batches-py/{name}").read()


@pytest.mark.genuine_data
def test_learners_subset_shapes_class_counts_and_content_hash(sample):
    x_train, y_train, x_test, y_test = sample[:4]
    assert x_train.shape == (4000, 3, 32, 32) and x_test.shape == (1000, 3, 32, 32)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert y_train.dtype == y_test.dtype == np.int64
    assert np.bincount(y_train, minlength=10).tolist() == SAMPLE_TRAIN_COUNTS
    assert np.bincount(y_test, minlength=10).tolist() == SAMPLE_TEST_COUNTS
    assert x_train.std() > 30  # real photos, not a blank array
    assert sample.identity["sha256"] == data.SAMPLE_SHA256 == data.content_hash(*sample[:4])
    assert "learner's subset" in sample.description and "verified" in sample.description


@pytest.mark.genuine_data
def test_genuine_order_and_channel_layout_match_the_raw_first_batch(sample):
    """Image n is row n of data_batch_1 (in the official archive and in any copy of its first
    images), red plane first."""
    batch = cifar10._BatchUnpickler(io.BytesIO(genuine_member("data_batch_1")), "test").load()
    x_train, y_train = sample[:2]
    np.testing.assert_array_equal(x_train[5, 0].ravel(), batch["data"][5, :1024])
    np.testing.assert_array_equal(x_train[5, 2].ravel(), batch["data"][5, 2048:])
    n = min(len(batch["labels"]), 4000)
    assert y_train[:n].tolist() == batch["labels"][:n]


@pytest.mark.genuine_data
def test_genuine_class_names_match_batches_meta():
    meta = genuine_member("batches.meta")
    assert tuple(cifar10._BatchUnpickler(io.BytesIO(meta), "meta").load()["label_names"]) == \
        data.CIFAR10_CLASSES


# --------------------------------------------------------------------------- the generated archive

def test_generated_archive_loads_in_official_order_and_extracted_the_same(cifar_archive, tmp_path):
    _, path, _, arrays = cifar_archive
    for got, want in zip(data.load_cifar10(path), arrays):
        np.testing.assert_array_equal(got, want)
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            (tmp_path / m.name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / m.name).write_bytes(tar.extractfile(m).read())
    for where in (tmp_path, tmp_path / "cifar-10-batches-py"):
        for got, want in zip(data.load_cifar10(where), arrays):
            np.testing.assert_array_equal(got, want)


def test_subset_is_the_first_images_of_each_part(cifar_archive):
    _, path, _, (x_train, y_train, x_test, y_test) = cifar_archive
    got = data.load_cifar10(path, train_size=150, test_size=30)  # 150 crosses into data_batch_2
    for a, b in zip(got, (x_train[:150], y_train[:150], x_test[:30], y_test[:30])):
        np.testing.assert_array_equal(a, b)
    assert data.load_cifar10(path, train_size=500)[0].shape[0] == 500 and got[2].shape[0] == 30


@pytest.mark.parametrize("kwargs, match", [
    (dict(train_size=501), r"train_size=501 asks for more training images than .* holds \(500\)"),
    (dict(test_size=101), r"test_size=101 asks for more test images than .* holds \(100\)"),
    (dict(train_size=0), "train_size must be a positive int or None, got 0"),
    (dict(test_size=2.5), "test_size must be a positive int or None, got 2.5"),
])
def test_subset_larger_than_the_files_or_not_a_count_is_an_error(cifar_archive, kwargs, match):
    with pytest.raises((data.DatasetError, ValueError), match=match):
        data.load_cifar10(cifar_archive[1], **kwargs)


def test_dataset_identity_names_the_content_not_the_path(cifar_archive, tmp_path):
    folder, path, _, arrays = cifar_archive
    a = data.load_dataset("cifar10", subset=(200, 50), data_dir=folder)
    moved = tmp_path / "elsewhere.tar.gz"
    moved.write_bytes(path.read_bytes())
    b = data.load_dataset("cifar10", subset=[200, 50], data_dir=moved)
    assert a.identity == b.identity == {"name": "cifar10", "subset": [200, 50], "train": 200, "test": 50,
                                        "sha256": data.content_hash(arrays[0][:200], arrays[1][:200],
                                                                    arrays[2][:50], arrays[3][:50])}
    assert str(folder) not in repr(a.identity) and "first 200 training and 50 test images" in a.description
    c = data.load_dataset("cifar10", subset=(201, 50), data_dir=folder)
    assert c.identity["sha256"] != a.identity["sha256"]
    whole = data.load_dataset("cifar10", data_dir=folder)
    assert "not the official counts" in whole.description  # 500/100 images: never called CIFAR-10's own
    with pytest.raises(data.DatasetError, match="train_size=4000 asks for more training images"):
        data.load_dataset("cifar10", subset=data.SAMPLE_SUBSET, data_dir=folder)


def test_a_fake_learners_subset_is_not_described_as_genuine(monkeypatch, cifar_archive):
    """Same counts as the learner's subset, other content: the description says it is not genuine."""
    monkeypatch.setattr(data.dataset, "SAMPLE_SUBSET", (200, 50))
    ident = data.load_dataset("cifar10", subset=(200, 50), data_dir=cifar_archive[0]).identity
    assert "not the genuine images" in data.describe(ident)


def test_synthetic_dataset_says_what_it_is_and_is_seeded():
    a, b = data.load_dataset("synthetic", seed=3), data.load_dataset("synthetic", seed=3)
    assert a.identity == b.identity and a.identity["name"] == "synthetic" and a.identity["seed"] == 3
    assert a.description.startswith("synthetic CIFAR-shaped images") and "not CIFAR-10" in a.description
    assert data.load_dataset("synthetic", seed=4).identity["sha256"] != a.identity["sha256"]


def test_fallback_to_synthetic_says_why_and_never_claims_cifar(no_data):
    got = data.load_dataset("cifar10", subset=data.SAMPLE_SUBSET, fallback="synthetic")
    assert got.identity["name"] == "synthetic" and "no CIFAR-10 was found" in got.description
    assert "not CIFAR-10" in got.description and not no_data.exists()
    with pytest.raises(data.DataNotFoundError):
        data.load_dataset("cifar10")


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="imagenet"), "name must be 'cifar10' or 'synthetic', got 'imagenet'"),
    (dict(fallback="zeros"), "fallback must be None or 'synthetic', got 'zeros'"),
    (dict(subset=(4000,)), r"subset must be two positive ints .* got \(4000,\)"),
    (dict(subset=(4000, -1)), r"subset must be two positive ints .* got \(4000, -1\)"),
])
def test_load_dataset_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load_dataset(**kwargs)


# --------------------------------------------------------------------------- crafted archives

@pytest.mark.parametrize("gz", [True, False])
def test_tiny_archive_loads_in_official_order(tmp_path, gz):
    batches = good_batches()
    # members written in a scrambled order: the loader must still order them officially
    order = ["test_batch", "data_batch_3", "data_batch_1", "data_batch_5", "data_batch_2",
             "data_batch_4"]
    path = write_archive(tmp_path / "t.tar", {k: batches[k] for k in order}, gz=gz)
    x_train, y_train, x_test, y_test = data.load_cifar10(path)
    expected = np.concatenate([batches[k]["data"] for k in data.TRAIN_BATCHES])
    np.testing.assert_array_equal(x_train.reshape(30, 3072), expected)
    assert y_train.tolist() == sum((batches[k]["labels"] for k in data.TRAIN_BATCHES), [])
    np.testing.assert_array_equal(x_test.reshape(6, 3072), batches["test_batch"]["data"])
    assert y_test.dtype == np.int64 and x_test.shape == (6, 3, 32, 32)


def test_bytes_keys_are_accepted(tmp_path):
    batches = {k: {b"data": v["data"], b"labels": v["labels"]} for k, v in good_batches().items()}
    x_train, _, _, _ = data.load_cifar10(write_archive(tmp_path / "b.tar.gz", batches))
    assert x_train.shape == (30, 3, 32, 32)


@pytest.mark.parametrize("damage", ["cut_half", "cut_trailer", "flip_byte"])
def test_truncated_or_corrupt_archive_is_a_clear_error(tiny_archive, damage):
    path, _ = tiny_archive
    raw = bytearray(path.read_bytes())
    if damage == "cut_half":
        raw = raw[: len(raw) // 2]
    elif damage == "cut_trailer":  # only the gzip CRC/length trailer is lost
        raw = raw[:-4]
    else:
        raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(data.DatasetError, match=str(path)):
        data.load_cifar10(path)


def test_missing_batch_is_named(tmp_path):
    batches = good_batches()
    del batches["data_batch_3"]
    path = write_archive(tmp_path / "m.tar.gz", batches)
    with pytest.raises(data.DatasetError, match=r"lacks cifar-10-batches-py/data_batch_3"):
        data.load_cifar10(path)


def test_missing_batch_in_directory_is_named(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name, batch in good_batches().items():
        if name != "test_batch":
            (d / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(data.DatasetError, match="lacks test_batch"):
        data.load_cifar10(tmp_path)


def test_not_a_tar_archive(tmp_path):
    path = tmp_path / "x.tar.gz"
    path.write_bytes(gzip.compress(b"hello" * 100))
    with pytest.raises(data.DatasetError, match="truncated or corrupt"):
        data.load_cifar10(path)


def test_nonexistent_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        data.load_cifar10(tmp_path / "nope.tar.gz")


def _bad(field, value):
    batch = make_batch(6, 0)
    batch[field] = value
    return batch


@pytest.mark.parametrize("batch, message", [
    (_bad("data", np.zeros((6, 3000), np.uint8)),
     r"shape \(N, 3072\), got a uint8 array of shape \(6, 3000\)"),
    (_bad("data", np.zeros((6, 3072), np.float32)), "got a float32 array"),
    (_bad("data", np.zeros((6, 3, 32, 32), np.uint8)), r"shape \(6, 3, 32, 32\)"),
    (_bad("labels", [1, 2, 3]), "3 labels for 6 images"),
    (_bad("labels", [0, 1, 2, 10, 4, 5]), r"labels must be in 0..9, found \[10\]"),
    (_bad("labels", [0.5] * 6), "'labels' must be a list of ints"),
    ({"labels": [0] * 6}, "no 'data' entry"),
    ([1, 2, 3], "holds a list"),
])
def test_malformed_batches_are_clear_errors(tmp_path, batch, message):
    batches = good_batches()
    batches["data_batch_2"] = batch
    path = write_archive(tmp_path / "bad.tar.gz", batches)
    with pytest.raises(data.DatasetError, match=message) as info:
        data.load_cifar10(path)
    assert "data_batch_2" in str(info.value) and str(path) in str(info.value)


class _Evil:
    """Pickles to ``func(*args)``: what an attacker puts in a batch file."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("make", [
    lambda marker: _Evil(os.system, f"touch {marker}"),
    lambda marker: _Evil(exec, f"open({str(marker)!r}, 'w').close()"),
    lambda marker: {"data": _Evil(eval, f"open({str(marker)!r}, 'w')"), "labels": []},
], ids=["os.system", "exec", "eval-inside-dict"])
@pytest.mark.parametrize("form", ["archive", "directory"])
def test_malicious_pickle_does_not_execute(tmp_path, make, form):
    marker = tmp_path / "pwned"
    batches = good_batches()
    batches["data_batch_1"] = pickle.dumps(make(marker), protocol=2)
    if form == "archive":
        path = write_archive(tmp_path / "evil.tar.gz", batches)
    else:
        path = tmp_path / "cifar-10-batches-py"
        path.mkdir()
        for name, b in batches.items():
            (path / name).write_bytes(b if isinstance(b, bytes) else pickle.dumps(b, protocol=2))
    forbidden = r"references the global '(posix|__builtin__)\."  # protocol 2 spells builtins __builtin__
    with pytest.raises(pickle.UnpicklingError, match=forbidden) as info:
        data.load_cifar10(path)
    assert "data_batch_1" in str(info.value)
    assert not marker.exists()


def test_codecs_encode_only_allowed_for_latin1():
    evil = pickle.dumps(_Evil(__import__("_codecs").encode, "x", "rot13"), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="latin1"):
        cifar10._BatchUnpickler(io.BytesIO(evil), "t").load()


# --------------------------------------------------------------------------- finding

def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "minires"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.cache_dir() == Path.home() / ".cache" / "minires"


def test_search_order_argument_then_variable_then_cache(cifar_archive, no_data, tmp_path, monkeypatch):
    folder, path, _, _ = cifar_archive
    other = tmp_path / "other"
    other.mkdir()
    write_archive(other / data.CIFAR10_FILENAME, good_batches())
    no_data.mkdir(parents=True)
    write_archive(no_data / data.CIFAR10_FILENAME, good_batches())
    assert data.find_or_download_cifar10() == no_data / data.CIFAR10_FILENAME          # the user cache
    monkeypatch.setenv("MINIRES_DATA_DIR", str(other))
    assert data.find_or_download_cifar10() == other / data.CIFAR10_FILENAME            # the variable first
    assert data.find_or_download_cifar10(folder) == path                               # the argument first
    assert data.find_or_download_cifar10(path) == path


def test_a_given_location_is_only_read_never_created(no_data, tmp_path, monkeypatch):
    monkeypatch.setattr(data.find, "download_cifar10", lambda *a, **k: pytest.fail("downloaded"))
    missing = tmp_path / "no" / "such" / "folder"
    with pytest.raises(data.DataNotFoundError, match=r"data_dir \(--data-dir\) is .*folder, which does not exist"):
        data.find_or_download_cifar10(missing)
    assert not (tmp_path / "no").exists() and not no_data.exists()
    monkeypatch.setenv("MINIRES_DATA_DIR", str(missing))
    with pytest.raises(data.DataNotFoundError, match=r"\$MINIRES_DATA_DIR is .*folder, which does not exist"):
        data.find_or_download_cifar10()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(data.DataNotFoundError, match="which holds no CIFAR-10") as info:
        data.find_or_download_cifar10(empty)
    assert list(empty.iterdir()) == [] and not no_data.exists()
    for way in (f"put it at {no_data / data.CIFAR10_FILENAME}", "--data-dir", "$MINIRES_DATA_DIR",
                "--dataset synthetic", data.CIFAR10_URL):
        assert way in str(info.value)


def test_offline_means_no_download_and_no_cache_folder(no_data, monkeypatch):
    monkeypatch.setattr(data.find, "download_cifar10", lambda *a, **k: pytest.fail("downloaded"))
    monkeypatch.setenv("MINIRES_OFFLINE", "1")
    with pytest.raises(data.DataNotFoundError, match=r"downloads are off \(\$MINIRES_OFFLINE is set\)"):
        data.find_or_download_cifar10()
    with pytest.raises(data.DataNotFoundError, match="download=False"):
        data.find_or_download_cifar10(download=False)
    assert not no_data.exists()


def test_failed_download_leaves_no_cache_folder(no_data, monkeypatch):
    monkeypatch.delenv("MINIRES_OFFLINE")
    monkeypatch.setattr(data.cifar10, "CIFAR10_URL", "file:///nonexistent/cifar-10-python.tar.gz")
    with pytest.raises(data.DownloadError, match="--dataset synthetic"):
        data.find_or_download_cifar10(progress=False)
    assert not no_data.exists() and not no_data.parent.exists()


def test_find_prefers_extracted_dir_then_official_name(tmp_path):
    write_archive(tmp_path / "other-name.tar.gz", good_batches())
    (tmp_path / "unrelated.tar.gz").write_bytes(gzip.compress(b"x" * 1024))
    assert data.find_cifar10(tmp_path) == tmp_path / "other-name.tar.gz"
    write_archive(tmp_path / data.CIFAR10_FILENAME, good_batches())
    assert data.find_cifar10(tmp_path) == tmp_path / data.CIFAR10_FILENAME
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert data.find_cifar10(tmp_path) == tmp_path / "cifar-10-batches-py"


def test_find_refuses_to_guess_between_archives(tmp_path):
    write_archive(tmp_path / "a.tar.gz", good_batches())
    write_archive(tmp_path / "b.tar.gz", good_batches())
    with pytest.raises(data.DatasetError, match="several CIFAR-10 archives"):
        data.find_cifar10(tmp_path)


def test_find_or_download_downloads_once_into_the_cache(cifar_archive, no_data, monkeypatch):
    _, src, md5, arrays = cifar_archive
    monkeypatch.delenv("MINIRES_OFFLINE")
    monkeypatch.setattr(data.cifar10, "CIFAR10_URL", src.as_uri())
    monkeypatch.setattr(data.cifar10, "CIFAR10_MD5", md5)
    path = data.find_or_download_cifar10(progress=False)
    assert path == no_data / data.CIFAR10_FILENAME and md5_of(path) == md5
    np.testing.assert_array_equal(data.load_cifar10(path)[0], arrays[0])
    monkeypatch.setattr(data.cifar10, "CIFAR10_URL", "file:///nonexistent/never-fetched.tar.gz")
    assert data.find_or_download_cifar10(progress=False) == path  # found, not refetched


# --------------------------------------------------------------------------- downloading

def test_download_verifies_and_renames(tiny_archive, tmp_path):
    src, _ = tiny_archive
    root = tmp_path / "dl"
    path = data.download_cifar10(root, url=src.as_uri(), md5=md5_of(src), progress=True)
    assert path == root / data.CIFAR10_FILENAME and path.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in root.iterdir()) == [data.CIFAR10_FILENAME]


def test_download_md5_mismatch_deletes_partial_file(tiny_archive, tmp_path):
    src, _ = tiny_archive
    root = tmp_path / "dl"
    with pytest.raises(data.DownloadError, match=r"has md5 [0-9a-f]{32}, expected 0{32}"):
        data.download_cifar10(root, url=src.as_uri(), md5="0" * 32, progress=False)
    assert not root.exists()  # neither the archive nor a .part file, nor the folder it made


@pytest.mark.parametrize("url", ["file:///nonexistent/cifar-10-python.tar.gz",
                                 "http://127.0.0.1:9/cifar-10-python.tar.gz"])
def test_offline_download_says_where_to_put_the_archive(tmp_path, url):
    with pytest.raises(data.DownloadError) as info:
        data.download_cifar10(tmp_path, url=url, progress=False, timeout=5)
    message = str(info.value)
    assert f"put it at {tmp_path / data.CIFAR10_FILENAME}" in message and url in message
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class Broken(io.BytesIO):
        headers = {"Content-Length": "100000"}

        def read(self, n=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return super().read(10)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: Broken(b"x" * 1000))
    with pytest.raises(data.DownloadError, match="connection reset"):
        data.download_cifar10(tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_existing_download_is_reused_or_rejected(tiny_archive, tmp_path):
    src, _ = tiny_archive
    dest = tmp_path / data.CIFAR10_FILENAME
    dest.write_bytes(src.read_bytes())
    never = "file:///nonexistent/x.tar.gz"
    assert data.download_cifar10(tmp_path, url=never, md5=md5_of(src)) == dest
    with pytest.raises(data.DownloadError, match="already exists but its md5"):
        data.download_cifar10(tmp_path, url=never, md5="0" * 32)
    assert dest.exists()  # a file we did not write is not deleted


# --------------------------------------------------------------------------- preprocessing

def test_per_pixel_mean_and_normalize():
    x, _, _, _ = data.synthetic_cifar(200, 0, seed=1)
    mean = data.per_pixel_mean(x)
    assert mean.dtype == np.float32 and mean.shape == (3, 32, 32)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(0), rtol=1e-6)
    z = data.normalize(x, mean)
    assert z.dtype == np.float32 and z.shape == x.shape
    np.testing.assert_allclose(z, (x - mean.astype(np.float64)) / 255, atol=1e-6)
    assert np.abs(z.mean(0)).max() < 1e-5  # per-pixel mean removed
    assert data.normalize(x).max() <= 1.0 and data.normalize(x).dtype == np.float32


def test_preprocessing_rejects_bad_input():
    x, _, _, _ = data.synthetic_cifar(10, 0)
    with pytest.raises(TypeError, match="mean must be a float32"):
        data.normalize(x, x.mean(0))  # float64
    with pytest.raises(ValueError, match=r"mean has shape \(3, 16, 16\)"):
        data.normalize(x, np.zeros((3, 16, 16), np.float32))
    with pytest.raises(TypeError, match="x must have dtype uint8, got float32"):
        data.normalize(x.astype(np.float32))
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        data.per_pixel_mean(x[0])


def _padded(x, p=4):
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))


def test_crop_flip_matches_explicit_slicing():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 32, 32)).astype(np.float32)
    rows, cols = np.array([0, 8, 4, 2, 8]), np.array([0, 8, 4, 7, 1])
    flip = np.array([False, True, False, True, True])
    out = data.crop_flip(x, rows, cols, flip)
    p = _padded(x)
    for i in range(5):
        window = p[i, :, rows[i]:rows[i] + 32, cols[i]:cols[i] + 32]
        np.testing.assert_array_equal(out[i], window[:, :, ::-1] if flip[i] else window)
    np.testing.assert_array_equal(out[2], x[2])  # centre crop, no flip: unchanged
    np.testing.assert_array_equal(out[0, :, :4, :], 0)  # top rows came from the padding
    np.testing.assert_array_equal(out[1, :, 28:, :], 0)  # shifted up: bottom rows padding


def test_random_crop_flip_really_crops_and_flips():
    x = np.random.default_rng(1).uniform(1, 2, (256, 3, 32, 32)).astype(np.float32)
    out = data.random_crop_flip(x, np.random.default_rng(2))
    assert out.shape == x.shape and out.dtype == np.float32
    p = _padded(x)
    seen = set()
    for i in range(len(x)):  # each output is exactly one window of its padded original
        matches = [(r, c, f) for r in range(9) for c in range(9) for f in (False, True)
                   if np.array_equal(out[i], p[i, :, r:r + 32, c:c + 32][:, :, ::-1] if f
                                     else p[i, :, r:r + 32, c:c + 32])]
        assert len(matches) == 1
        seen.add(matches[0])
    assert {f for _, _, f in seen} == {False, True}
    assert len({(r, c) for r, c, _ in seen}) > 40  # many of the 81 offsets
    assert (out == 0).any() and not (x == 0).any()  # padding zeros entered
    assert (out != x).any(axis=(1, 2, 3)).mean() > 0.9


def test_random_crop_flip_is_reproducible():
    x = np.random.default_rng(1).standard_normal((64, 3, 32, 32)).astype(np.float32)
    a = data.random_crop_flip(x, np.random.default_rng(7))
    b = data.random_crop_flip(x, np.random.default_rng(7))
    c = data.random_crop_flip(x, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        data.random_crop_flip(x, 7)


# --------------------------------------------------------------------------- split

def test_train_val_split():
    x = np.arange(100).reshape(100, 1, 1, 1).astype(np.uint8)
    y = np.arange(100, dtype=np.int64)
    xt, yt, xv, yv = data.train_val_split(x, y, val_size=10, rng=0)
    assert len(yt) == 90 and len(yv) == 10
    assert sorted(np.concatenate([yt, yv]).tolist()) == list(range(100))
    assert np.all(np.diff(yt) > 0) and np.all(np.diff(yv) > 0)  # original order kept
    np.testing.assert_array_equal(xv.ravel(), yv)  # images stay with their labels
    assert data.train_val_split(x, y, 10, rng=0)[3].tolist() == yv.tolist()
    assert data.train_val_split(x, y, 10, rng=1)[3].tolist() != yv.tolist()
    assert len(data.train_val_split(x, y, 0.25)[3]) == 25


@pytest.mark.parametrize("val_size", [100, 5000, 0, 0.0, 1.0])
def test_train_val_split_rejects_sizes_leaving_a_part_empty(val_size):
    x, y = np.zeros((100, 3, 32, 32), np.uint8), np.zeros(100, np.int64)
    with pytest.raises(ValueError, match="val_size"):
        data.train_val_split(x, y, val_size)


# --------------------------------------------------------------------------- batching

def _indexed(n):
    """Images whose pixels encode their index, labels = index."""
    x = np.broadcast_to((np.arange(n) % 251)[:, None, None, None], (n, 3, 32, 32))
    return x.astype(np.uint8), np.arange(n, dtype=np.int64)


def test_batches_cover_every_index_once_per_epoch():
    x, y = _indexed(103)
    rng = np.random.default_rng(0)
    epochs = []
    for _ in range(2):
        batches = list(data.iterate_batches(x, y, 10, shuffle=True, rng=rng))
        assert [len(yb) for _, yb in batches] == [10] * 10 + [3]
        labels = np.concatenate([yb for _, yb in batches])
        assert sorted(labels.tolist()) == list(range(103))
        for xb, yb in batches:
            assert xb.dtype == np.float32 and xb.shape[1:] == (3, 32, 32) and yb.dtype == np.int64
            np.testing.assert_array_equal(xb, data.normalize(x[yb]))  # images match labels
        epochs.append(labels)
    assert epochs[0].tolist() != epochs[1].tolist() != list(range(103))
    dropped = list(data.iterate_batches(x, y, 10, shuffle=True, rng=rng, drop_last=True))
    assert len(dropped) == 10 and len(set(np.concatenate([b for _, b in dropped]).tolist())) == 100


def test_unshuffled_batches_are_in_order_and_use_the_mean():
    x, y, _, _ = data.synthetic_cifar(50, 0)
    mean = data.per_pixel_mean(x)
    xb = np.concatenate([b for b, _ in data.iterate_batches(x, y, 16, mean=mean)])
    np.testing.assert_array_equal(xb, data.normalize(x, mean))


def test_augmented_batches_are_crops_and_flips_of_the_normalised_images():
    x, y, _, _ = data.synthetic_cifar(64, 0)
    mean = data.per_pixel_mean(x)
    rng, twin = np.random.default_rng(3), np.random.default_rng(3)
    batches = list(data.iterate_batches(x, y, 16, shuffle=True, augment=True, mean=mean, rng=rng))
    # the documented draw order: permutation, then rows, cols, flips of all N positions
    order = twin.permutation(64)
    rows, cols, flip = data.draw_crop_flip(twin, 64)
    expected = data.crop_flip(data.normalize(x[order], mean), rows, cols, flip)
    np.testing.assert_array_equal(np.concatenate([b for b, _ in batches]), expected)
    np.testing.assert_array_equal(np.concatenate([b for _, b in batches]), y[order])
    assert flip.any() and (rows != 4).any()  # so augmentation did change images
    assert rng.bit_generator.state == twin.bit_generator.state


def test_resuming_from_saved_rng_state_is_bit_identical():
    x, y, _, _ = data.synthetic_cifar(70, 0)
    mean = data.per_pixel_mean(x)
    kwargs = dict(shuffle=True, augment=True, mean=mean)
    rng = np.random.default_rng(123)
    list(data.iterate_batches(x, y, 8, rng=rng, **kwargs))       # epoch 0
    saved = data_loader._copy_state(rng.bit_generator.state)            # checkpoint at epoch 1 start
    run = list(data.iterate_batches(x, y, 8, rng=rng, **kwargs))  # epoch 1
    after = rng.bit_generator.state
    nxt = list(data.iterate_batches(x, y, 8, rng=rng, **kwargs))  # epoch 2

    resumed = np.random.default_rng(999)
    resumed.bit_generator.state = saved
    rest = list(data.iterate_batches(x, y, 8, rng=resumed, start_batch=3, **kwargs))
    assert len(rest) == len(run) - 3
    for (a, ya), (b, yb) in zip(run[3:], rest):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)
    assert resumed.bit_generator.state == after
    for (a, _), (b, _) in zip(nxt, data.iterate_batches(x, y, 8, rng=resumed, **kwargs)):
        np.testing.assert_array_equal(a, b)


def test_loader_len_epochs_and_state_dict():
    x, y, _, _ = data.synthetic_cifar(45, 0)
    loader = data.Loader(x, y, 8, shuffle=True, augment=True, mean=data.per_pixel_mean(x), rng=5)
    assert len(loader) == 6
    state = loader.state_dict()
    first = [yb.tolist() for _, yb in loader]
    second = [yb.tolist() for _, yb in loader]
    assert len(first) == 6 and first != second
    loader.load_state_dict(state)
    again = list(loader.epoch(start_batch=2))
    assert [yb.tolist() for _, yb in again] == first[2:]
    assert len(data.Loader(x, y, 8, drop_last=True)) == 5


def test_iterator_rejects_bad_arguments():
    x, y, _, _ = data.synthetic_cifar(20, 0)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        data.iterate_batches(x, y, 4, shuffle=True, rng=0)
    with pytest.raises(ValueError, match="20 images but y has 19"):
        data.iterate_batches(x, y[:-1], 4)
    with pytest.raises(ValueError, match="batch_size"):
        data.iterate_batches(x, y, 0)
    with pytest.raises(ValueError, match="start_batch"):
        data.iterate_batches(x, y, 4, start_batch=6)
    with pytest.raises(TypeError, match="need rng"):
        data.Loader(x, y, 4, shuffle=True)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA device")
def test_batches_on_gpu_equal_cpu_batches():
    from minires.backend import device_of, to_numpy
    x, y, _, _ = data.synthetic_cifar(20, 0)
    cpu = list(data.iterate_batches(x, y, 8, shuffle=True, augment=True,
                                    rng=np.random.default_rng(0)))
    gpu = list(data.iterate_batches(x, y, 8, shuffle=True, augment=True,
                                    rng=np.random.default_rng(0), device="gpu"))
    for (a, ya), (b, yb) in zip(cpu, gpu):
        assert device_of(b) == "gpu" and device_of(yb) == "gpu"
        np.testing.assert_array_equal(a, to_numpy(b))
        np.testing.assert_array_equal(ya, to_numpy(yb))


# --------------------------------------------------------------------------- synthetic

def test_synthetic_cifar_format_and_reproducibility():
    a = data.synthetic_cifar(100, 30, seed=3)
    b = data.synthetic_cifar(100, 30, seed=3)
    x_train, y_train, x_test, y_test = a
    assert x_train.shape == (100, 3, 32, 32) and x_test.shape == (30, 3, 32, 32)
    assert x_train.dtype == np.uint8 and y_train.dtype == y_test.dtype == np.int64
    assert np.bincount(y_train).tolist() == [10] * 10
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(x_train, data.synthetic_cifar(100, 30, seed=4)[0])


def test_synthetic_labels_are_learnable():
    """A nearest-class-mean classifier fit on train must do far better than chance on test."""
    x_train, y_train, x_test, y_test = data.synthetic_cifar(500, 200, seed=0)
    feats = lambda x: x.reshape(len(x), -1).astype(np.float32)
    means = np.stack([feats(x_train[y_train == k]).mean(0) for k in range(10)])
    dist = ((feats(x_test)[:, None, :] - means[None]) ** 2).sum(-1)
    assert (dist.argmin(1) == y_test).mean() > 0.9
    flipped = feats(x_test[..., ::-1])  # flips keep the class
    assert (((flipped[:, None, :] - means[None]) ** 2).sum(-1).argmin(1) == y_test).mean() > 0.9


def test_loader_checks_its_batch_size_when_built():
    x, y = np.zeros((10, 32, 32, 3), np.uint8), np.zeros(10, np.int64)
    with pytest.raises(ValueError, match="Loader: batch_size must be an integer >= 1"):
        data.Loader(x, y, 0)
    with pytest.raises(TypeError, match="Loader: batch_size must be an integer"):
        data.Loader(x, y, 2.5)
