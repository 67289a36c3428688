"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions: against the naive loops, against im2col, by
gradcheck, their float32 error, and their transforms (sums over phase planes) against the textbook
matrices B, G, A."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minires
import minires.functional as F
import minires.ops.conv as conv
import minires.cpu_kernels.winograd as wg
import reference as ref
from opcheck import TIGHT, assert_close, check_float32, check_grad, given_settings, rng_for, tensor


@st.composite
def winograd_cases(draw):
    """3x3 kernels at stride 1, padding 0..3 per axis, odd and even outputs, a few channels."""
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    h = draw(st.integers(max(1, 3 - 2 * ph), 9))
    w = draw(st.integers(max(1, 3 - 2 * pw), 9))
    assume(n * c * h * w <= 200)
    padding = draw(st.sampled_from([(ph, pw), ph])) if ph == pw else (ph, pw)
    return dict(x=(n, c, h, w), w=(o, c, 3, 3), bias=draw(st.booleans()), padding=padding,
                seed=draw(st.integers(0, 2**32 - 1)), algorithm=draw(st.sampled_from(list(wg.TRANSFORMS))))


def _arrays(case):
    rng = rng_for(case["seed"])
    x, w = rng.standard_normal(case["x"]), rng.standard_normal(case["w"])
    return x, w, (rng.standard_normal(case["w"][0]) if case["bias"] else None)


def _conv(case, algorithm):
    return lambda x, w, b: F.conv2d(x, w, b, padding=case["padding"], algorithm=algorithm)


@given(case=winograd_cases())
@given_settings
def test_winograd_matches_nested_loops_and_im2col(case):
    x, w, b = _arrays(case)
    args = [tensor(a, "cpu") if a is not None else None for a in (x, w, b)]
    got = _conv(case, case["algorithm"])(*args)
    assert_close(got, ref.conv2d(x, w, b, 1, case["padding"]), **TIGHT)
    assert_close(got, _conv(case, "im2col")(*args).numpy(), **TIGHT)


@given(case=winograd_cases())
@given_settings
def test_winograd_gradcheck(case):
    x, w, b = _arrays(case)
    check_grad(_conv(case, case["algorithm"]), [x, w, b], "cpu")


@given(case=winograd_cases())
@given_settings
def test_winograd_gradients_match_im2col(case):
    """The backward is the adjoint of each Winograd step, not im2col's: both must give the same numbers."""
    x, w, b = _arrays(case)
    gy = rng_for(case["seed"] + 1).standard_normal(ref.conv2d(x, w, b, 1, case["padding"]).shape)
    grads = []
    for algorithm in (case["algorithm"], "im2col"):
        ts = [None if a is None else minires.Tensor(a, requires_grad=True) for a in (x, w, b)]
        _conv(case, algorithm)(*ts).backward(gy)
        grads.append([None if t is None else np.asarray(t.grad) for t in ts])
    for got, expected in zip(*grads):
        if expected is not None:
            assert_close(got, expected, rtol=1e-10, atol=1e-11)


@given(case=winograd_cases())
@given_settings
def test_winograd_in_chunks_on_threads(case, monkeypatch):
    """One image per chunk, chunks on 2 worker threads: the chunk loop and the dW shares' sum."""
    monkeypatch.setattr(wg, "CHUNK_BYTES", 1)
    before = minires.get_num_threads()
    minires.set_num_threads(2)
    try:
        x, w, b = _arrays(case)
        got = _conv(case, case["algorithm"])(*(None if a is None else tensor(a, "cpu") for a in (x, w, b)))
        assert_close(got, ref.conv2d(x, w, b, 1, case["padding"]), **TIGHT)
        check_grad(_conv(case, case["algorithm"]), [x, w, b], "cpu")
    finally:
        minires.set_num_threads(before)


@pytest.mark.parametrize("algorithm", list(wg.TRANSFORMS))
def test_winograd_gradcheck_input_only_and_weight_only(algorithm):
    rng = rng_for(2)
    x, w = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, 3, 3))
    fn = lambda x, w: F.conv2d(x, w, padding=1, algorithm=algorithm)  # noqa: E731
    check_grad(fn, [x, w], "cpu", requires_grad=[True, False])
    check_grad(fn, [x, w], "cpu", requires_grad=[False, True])


@pytest.mark.parametrize("algorithm", list(wg.TRANSFORMS))
def test_winograd_float32_stays_float32(algorithm):
    rng = rng_for(1)
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    check_float32(lambda x, w, b: F.conv2d(x, w, b, padding=1, algorithm=algorithm), [x, w, b], "cpu")


@pytest.mark.parametrize("channels, px", [(16, 32), (32, 16), (64, 8)])
def test_winograd_float32_error_against_float64(channels, px):
    """Documented in benchmarks/README.md ("Round four"): at ResNet shapes (He-initialised weights)
    the float32 error of the output and of both gradients, relative to the largest float64 value,
    is a few 1e-7 for im2col; F(2x2) adds at most a small factor, F(4x4) (whose transforms
    multiply by up to 8) a larger one, still far below what training notices."""
    rng = rng_for(3)
    x = rng.standard_normal((4, channels, px, px))
    w = rng.standard_normal((channels, channels, 3, 3)) * np.sqrt(2 / (9 * channels))
    gy = rng.standard_normal((4, channels, px, px))
    exact = _output_and_grads(x, w, gy, "im2col", np.float64)
    errors = {}
    for algorithm in ("im2col", "winograd", "winograd4"):
        got = _output_and_grads(x, w, gy, algorithm, np.float32)
        errors[algorithm] = max(np.abs(g - e).max() / np.abs(e).max() for g, e in zip(got, exact))
    assert errors["im2col"] < 1e-6 and errors["winograd"] < 2e-6 and errors["winograd4"] < 1e-5, errors
    assert errors["winograd"] < 4 * errors["im2col"], errors
    assert errors["winograd4"] < 20 * errors["im2col"], errors


def _output_and_grads(x, w, gy, algorithm, dtype):
    xt, wt = (minires.Tensor(a.astype(dtype), requires_grad=True) for a in (x, w))
    y = F.conv2d(xt, wt, padding=1, algorithm=algorithm)
    y.backward(gy.astype(dtype))
    return [np.asarray(a, dtype=np.float64) for a in (y.numpy(), xt.grad, wt.grad)]


@pytest.mark.parametrize("algorithm", list(wg.TRANSFORMS))
def test_transforms_match_the_textbook_matrices(algorithm):
    """V = B^T d B for each a x a tile d, U = G g G^T, y = A^T M A, written with the matrices."""
    tf = wg.TRANSFORMS[algorithm]
    a, m = tf.a, tf.m
    rng = rng_for(4)
    n, c, o, h, w, p = 2, 3, 2, 5, 10, 1
    x, g = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, 3, 3))
    oh, ow = h + 2 * p - 2, w + 2 * p - 2
    grid = wg.TileGrid(c, n, oh, ow, m)
    v = wg.input_transform(wg.to_phase_planes(x, grid, p, p), grid, tf).reshape(a, a, c, n, grid.th + 1, grid.tw + 1)
    u = wg.weight_transform(g, tf).reshape(a, a, o, c)
    mm = np.einsum("abok,abkntx->abontx", u, v)
    y = np.empty((o, n, oh, ow))
    wg.output_transform(mm.reshape(a * a, o, grid.tiles), grid, tf, y)
    padded = np.zeros((n, c, m * grid.th + 2, m * grid.tw + 2))
    padded[:, :, p:p + h, p:p + w] = x
    for i in range(n):
        for ty in range(grid.th):
            for tx in range(grid.tw):
                for ch in range(c):
                    d = padded[i, ch, m * ty:m * ty + a, m * tx:m * tx + a]
                    np.testing.assert_allclose(v[:, :, ch, i, ty, tx], tf.B_T @ d @ tf.B_T.T, atol=1e-12)
                block = tf.A_T @ mm[:, :, :, i, ty, tx].transpose(2, 0, 1) @ tf.A_T.T
                np.testing.assert_allclose(y[:, i, m * ty:m * ty + m, m * tx:m * tx + m],
                                           block[:, :oh - m * ty, :ow - m * tx], atol=1e-12)
    for oo in range(o):
        for ch in range(c):
            np.testing.assert_allclose(u[:, :, oo, ch], tf.G @ g[oo, ch] @ tf.G.T, atol=1e-12)


def test_fixed_rule_runs_im2col_where_it_was_measured_fastest():
    x = np.zeros((2, 16, 8, 8))
    assert conv.fixed_rule(x, np.zeros((16, 16, 3, 3)), (1, 1), (1, 1)) == "im2col"
    assert conv.fixed_rule(np.zeros((2, 8, 32, 32)), np.zeros((8, 8, 3, 3)), (1, 1), (1, 1)) == "im2col"
    assert conv.fixed_rule(x, np.zeros((16, 16, 3, 3)), (2, 2), (1, 1)) == "im2col"
    assert conv.fixed_rule(x, np.zeros((16, 16, 1, 1)), (1, 1), (0, 0)) == "im2col"
    assert conv.fixed_rule(np.zeros((2, 3, 32, 32)), np.zeros((16, 3, 3, 3)), (1, 1), (1, 1)) == "im2col"
    assert conv.fixed_rule(x, np.zeros((16, 16, 3, 3)), (1, 1), (0, 0)) == "im2col"  # 6x6 output
    assert conv.fixed_rule(np.zeros((2, 128, 8, 8)), np.zeros((8, 128, 3, 3)), (1, 1), (1, 1)) == "im2col"


def test_use_algorithm_sets_the_default_for_the_program_or_a_block():
    before = conv.default_algorithm
    x = minires.Tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    try:
        minires.use_algorithm("im2col")
        assert F.conv2d(x, np.ones((1, 1, 3, 3)), padding=1)._ctx.algorithm == "im2col"
        with minires.use_algorithm("winograd4"):
            assert F.conv2d(x, np.ones((1, 1, 3, 3)), padding=1)._ctx.algorithm == "winograd4"
            assert F.conv2d(x, np.ones((1, 1, 3, 3)), padding=1, algorithm="winograd")._ctx.algorithm == "winograd"
        assert conv.default_algorithm == "im2col"
        with pytest.raises(ValueError, match="use_algorithm: algorithm must be one of"):
            minires.use_algorithm("fft")
        with pytest.raises(TypeError, match="use_algorithm: autotune must be True or False"):
            minires.use_algorithm(autotune="yes")
        assert conv.default_algorithm == "im2col"  # a refused call changes nothing
    finally:
        minires.use_algorithm(before)


def test_bad_algorithm_is_a_clear_error():
    x, w = np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match="conv2d: algorithm must be one of"):
        F.conv2d(x, w, algorithm="fft")
    with pytest.raises(ValueError, match="conv2d: algorithm 'winograd' needs a 3x3 kernel and stride 1"):
        F.conv2d(x, w, stride=2, algorithm="winograd")
    with pytest.raises(ValueError, match="conv2d: algorithm 'winograd4' needs a 3x3 kernel and stride 1"):
        F.conv2d(x, w, stride=2, algorithm="winograd4")
    with pytest.raises(ValueError, match="needs a 3x3 kernel"):
        F.conv2d(x, np.ones((1, 1, 5, 5)), algorithm="winograd")
