"""Helpers shared by the op tests: moving data to the test's device, comparing with the
references, gradient checks, the float32 check, and hypothesis settings."""
import numpy as np
from hypothesis import HealthCheck, settings

from minires import Tensor, gradcheck
from minires.backend import device_of, to_device, to_numpy

# @given tests take the function-scoped ``device`` fixture: the fixture's value does not
# change between examples, so hypothesis's health check about it does not apply.
given_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

TIGHT = dict(rtol=1e-10, atol=1e-12)  # float64 forward against a float64 reference


def rng_for(seed):
    return np.random.default_rng(seed)


def tensor(array, device, requires_grad=False):
    """A Tensor holding ``array`` (a NumPy array, dtype kept) on ``device``."""
    return Tensor(to_device(np.asarray(array), device), requires_grad=requires_grad)


def assert_close(got, expected, rtol=1e-10, atol=1e-12):
    """``got`` (Tensor or backend array) equals the NumPy ``expected`` in shape and value."""
    got = to_numpy(got.data if isinstance(got, Tensor) else got)
    expected = np.asarray(expected)
    assert got.shape == expected.shape, f"shape {got.shape} != expected {expected.shape}"
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def distinct(rng, shape, scale=0.1):
    """Values that are all different (a scaled random permutation): max pooling has no ties,
    so its gradient is differentiable at the drawn point."""
    size = int(np.prod(shape, dtype=np.int64))
    return (rng.permutation(size).astype(np.float64) - size / 2).reshape(shape) * scale


def away_from_zero(rng, shape, margin=0.1):
    """Values with |x| >= margin and random signs (relu is smooth there)."""
    mag = rng.uniform(margin, 2.0, size=shape)
    return mag * rng.choice([-1.0, 1.0], size=shape)


def check_grad(fn, arrays, device, requires_grad=None, **kw):
    """gradcheck ``fn`` on float64 copies of ``arrays`` (NumPy arrays or None) on ``device``.

    ``requires_grad`` (a list of bools) picks which inputs are checked; by default all
    non-None float inputs.
    """
    inputs = []
    for i, a in enumerate(arrays):
        if a is None:
            inputs.append(None)
            continue
        a = np.asarray(a)
        rg = np.issubdtype(a.dtype, np.floating) if requires_grad is None else requires_grad[i]
        if np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float64)
        inputs.append(tensor(a, device, requires_grad=rg))
    assert gradcheck(fn, inputs, **kw)


def check_float32(fn, arrays, device, rtol=2e-4, atol=2e-5, upstream_seed=0):
    """``fn`` on float32 inputs computes in float32: the output and every input gradient are
    float32 (no silent upcast), on the input's device, and agree with the float64 run."""
    def run(dtype):
        ts = [None if a is None else tensor(np.asarray(a, dtype=dtype), device, requires_grad=True) for a in arrays]
        out = fn(*ts)
        g = rng_for(upstream_seed).standard_normal(out.shape).astype(dtype)
        out.backward(to_device(g, device))
        return out, ts

    out32, ts32 = run(np.float32)
    out64, ts64 = run(np.float64)
    assert out32.dtype == np.float32, f"output dtype {out32.dtype}, expected float32"
    assert out32.device == device
    assert_close(out32, to_numpy(out64.data), rtol=rtol, atol=atol)
    for i, (t32, t64) in enumerate(zip(ts32, ts64)):
        if t32 is None:
            continue
        assert t32.grad is not None, f"input {i} got no gradient"
        assert t32.grad.dtype == np.float32, f"input {i} gradient dtype {t32.grad.dtype}, expected float32"
        assert device_of(t32.grad) == device
        assert_close(t32.grad, to_numpy(t64.grad), rtol=rtol * 10, atol=atol * 10)
