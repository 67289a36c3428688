"""minires.cpu_memory: glibc keeps a training step's freed memory for the next step."""
import ctypes
import sys

import pytest

import minires
import minires.cpu_memory as cpu_memory
import minires.train.trainer as T
from minires.config import TrainConfig


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(cpu_memory, "_kept", None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc is Linux's C library")
def test_keep_freed_memory_sets_both_thresholds_on_glibc(fresh, monkeypatch):
    calls = []
    real_cdll = ctypes.CDLL

    class Recording:  # glibc, with its mallopt answering as it would, each call recorded
        def __init__(self, *args, **kwargs):
            self.lib = real_cdll(*args, **kwargs)
            self.gnu_get_libc_version = self.lib.gnu_get_libc_version

        def mallopt(self, param, value):
            calls.append((param, value))
            return self.lib.mallopt(param, value)

    monkeypatch.setattr(cpu_memory.ctypes, "CDLL", Recording)
    assert cpu_memory.keep_freed_memory() is True
    assert calls == [(cpu_memory.M_MMAP_THRESHOLD, 32 * 2**20), (cpu_memory.M_TRIM_THRESHOLD, 2**31 - 1)]
    assert cpu_memory.keep_freed_memory() is True and len(calls) == 2  # once per process


def test_keep_freed_memory_does_nothing_without_glibc(fresh, monkeypatch):
    class OtherLibc:  # e.g. musl or macOS: no gnu_get_libc_version
        def __init__(self, *args, **kwargs):
            pass

        def mallopt(self, param, value):
            raise AssertionError("mallopt called on a C library that is not glibc")

    monkeypatch.setattr(cpu_memory.ctypes, "CDLL", OtherLibc)
    assert cpu_memory.keep_freed_memory() is False


def test_keep_freed_memory_reports_a_refused_setting(fresh, monkeypatch):
    class Refusing:  # a glibc whose mallopt refuses (returns 0)
        def __init__(self, *args, **kwargs):
            self.gnu_get_libc_version = lambda: b"2.99"

        def mallopt(self, param, value):
            return 0

    monkeypatch.setattr(cpu_memory.ctypes, "CDLL", Refusing)
    assert cpu_memory.keep_freed_memory() is False


@pytest.mark.parametrize("device, expected", [
    ("cpu", 1),
    pytest.param("gpu", 0, marks=pytest.mark.skipif(not minires.gpu_available(), reason="needs a GPU with CuPy")),
])
def test_the_trainer_keeps_freed_memory_on_the_cpu_only(monkeypatch, device, expected):
    calls = []
    monkeypatch.setattr(T, "keep_freed_memory", lambda: calls.append(1))
    T.Trainer(TrainConfig(dataset="synthetic", train_limit=64, val_split=0.25, depth=8, width=4, device=device),
              log=lambda *a: None)
    assert len(calls) == expected
