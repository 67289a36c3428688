"""minires/_checks.py: one rule per kind of argument, the same error wherever it is used."""
import numpy as np
import pytest

from minires import _checks, nn
from minires.data import Loader, train_val_split
from minires.models import cifar_resnet


def test_check_int_refuses_bools_and_floats_and_small_values():
    assert _checks.check_int("f", "n", np.int64(3), minimum=1) == 3
    with pytest.raises(TypeError, match="f: n must be an integer, got True"):
        _checks.check_int("f", "n", True)
    with pytest.raises(TypeError, match="f: n must be an integer, got 2.0"):
        _checks.check_int("f", "n", 2.0)
    with pytest.raises(ValueError, match="f: n must be an integer >= 1, got n=0"):
        _checks.check_int("f", "n", 0, minimum=1)


def test_check_real():
    assert _checks.check_real("f", "lr", np.float32(0.5), minimum=0) == 0.5
    with pytest.raises(ValueError, match="must be > 0"):
        _checks.check_real("f", "gamma", 0.0, minimum=0, strictly=True)
    with pytest.raises(ValueError, match="must be finite"):
        _checks.check_real("f", "lr", float("inf"))
    with pytest.raises(TypeError, match="real number"):
        _checks.check_real("f", "lr", "0.1")


def test_pair():
    assert _checks.pair("f", "stride", 2, 1) == (2, 2)
    assert _checks.pair("f", "padding", [0, 1], 0) == (0, 1)
    with pytest.raises(TypeError, match="f: stride must be an int or a pair of ints"):
        _checks.pair("f", "stride", (1, 2, 3), 1)
    with pytest.raises(ValueError, match="f: padding must be >= 0"):
        _checks.pair("f", "padding", -1, 0)


def test_as_generator_keeps_a_generator_and_seeds_the_rest():
    g = np.random.default_rng(0)
    assert _checks.as_generator(g) is g
    assert _checks.as_generator(3).random() == np.random.default_rng(3).random()
    with pytest.raises(TypeError, match="seed must be None, an int or a numpy.random.Generator"):
        _checks.as_generator(1.5)


@pytest.mark.parametrize("build", [
    lambda: nn.Conv2d(3, 4, 3, stride=0),
    lambda: nn.MaxPool2d(2, padding=-1),
    lambda: nn.BatchNorm2d(4, eps=0),
    lambda: nn.BatchNorm2d(4, momentum=1.5),
    lambda: nn.Linear(0, 2),
    lambda: cifar_resnet(20, shortcut="D"),
])
def test_modules_check_their_settings_when_built(build):
    with pytest.raises(ValueError):
        build()


def test_the_same_seed_rule_everywhere():
    x, y = np.zeros((10, 3, 4, 4), np.uint8), np.arange(10) % 3
    for bad in (lambda: train_val_split(x, y, 2, rng=0.5),
                lambda: Loader(x, y, 2, shuffle=True, rng="0"),
                lambda: cifar_resnet(8, seed=1.5)):
        with pytest.raises(TypeError, match="seed must be None, an int or a numpy.random.Generator"):
            bad()


def test_pair_takes_numpy_integers_and_batch_norm_settings_check_types():
    assert nn.Conv2d(3, 4, np.int64(3)).kernel_size == (3, 3)
    with pytest.raises(TypeError, match="BatchNorm2d: eps must be a real number"):
        nn.BatchNorm2d(4, eps="1e-5")
    with pytest.raises(TypeError, match="BatchNorm2d: momentum must be a real number"):
        nn.BatchNorm2d(4, momentum=None)
    with pytest.raises(ValueError, match="BatchNorm2d: eps must be finite"):
        nn.BatchNorm2d(4, eps=float("inf"))
