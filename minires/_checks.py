"""Argument checks shared by every module: one rule, one message per kind of mistake.

Each check names where it is called from (``where``, e.g. ``"Conv2d"``), the argument and the
value it got, and returns the value normalised (a Python int, float, pair or Generator), so a
caller checks a setting once, when it is built, and stores the result. Wrong *type*:
``TypeError``; right type, wrong *value*: ``ValueError``.
"""
import math
import numbers

import numpy as np

SHORTCUT_OPTIONS = ("A", "B", "C")


def check_int(where, name, value, minimum=None):
    """``value`` as a Python int, after checking it is an integer (bools refused) >= minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{where}: {name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{where}: {name} must be an integer >= {minimum}, got {name}={value!r}")
    return value


def check_real(where, name, value, minimum=None, strictly=False, maximum=None):
    """``value`` as a Python float, after checking it is a finite real number in range.

    ``minimum`` is inclusive unless ``strictly``; ``maximum`` is inclusive.
    """
    # bool is a numbers.Real in Python; `momentum=True` is a bug, not 1.0.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)  # np.float64 / np.float32 scalars become plain Python floats
    if not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be finite, got {name}={value!r}")
    if minimum is not None and (value <= minimum if strictly else value < minimum):
        bound = ">" if strictly else ">="
        raise ValueError(f"{where}: invalid {name}={value!r}: must be {bound} {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{where}: invalid {name}={value!r}: must be <= {maximum}")
    return value


def pair(where, name, value, minimum):
    """An int or a pair of ints as a pair, each at least ``minimum`` (stride, padding, kernel)."""
    try:
        result = (value, value) if isinstance(value, numbers.Integral) else tuple(value)
    except TypeError:
        raise TypeError(f"{where}: {name} must be an int or a pair of ints, got {value!r}") from None
    if len(result) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in result):
        raise TypeError(f"{where}: {name} must be an int or a pair of ints, got {value!r}")
    result = tuple(int(v) for v in result)  # NumPy integers become Python ints
    if min(result) < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value!r}")
    return result


def batch_norm_settings(where, eps, momentum):
    """(eps, momentum) of a batch norm as floats: eps > 0, momentum in [0, 1]."""
    eps, momentum = check_real(where, "eps", eps), check_real(where, "momentum", momentum)  # types first
    if not eps > 0:
        raise ValueError(f"{where}: eps must be > 0, got {eps}")
    if not 0 <= momentum <= 1:
        raise ValueError(f"{where}: momentum must be in [0, 1], got {momentum}")
    return eps, momentum


def shortcut_option(where, option):
    """The paper's shortcut option: 'A' (zero-padding), 'B' (projection when shapes change)
    or 'C' (always a projection)."""
    if option not in SHORTCUT_OPTIONS:
        raise ValueError(f"{where}: shortcut must be one of 'A', 'B', 'C' (the paper's options), got {option!r}")
    return option


def as_generator(seed, where="seed", name="seed"):
    """``seed`` (None, an int, or a numpy Generator) as a ``numpy.random.Generator``; ``name`` is
    the argument's name in the error.

    A Generator is returned as it is (so successive calls keep drawing from one stream).
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(f"{where}: {name} must be None, an int or a numpy.random.Generator, got {seed!r}")
    return np.random.default_rng(seed)


def check_generator(where, rng):
    """Refuse anything but a Generator where a fresh seed per call would repeat the same draws."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{where}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
            f"got {type(rng).__name__}; a fresh seed per call would repeat every epoch")
    return rng
