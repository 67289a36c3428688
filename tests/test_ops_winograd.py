"""Winograd F(2x2, 3x3) convolution: against the naive loops, against im2col, by gradcheck,
and its transforms (additions on parity planes) against the textbook matrices B, G, A."""
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
                seed=draw(st.integers(0, 2**32 - 1)))


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
    got = _conv(case, "winograd")(*args)
    assert_close(got, ref.conv2d(x, w, b, 1, case["padding"]), **TIGHT)
    assert_close(got, _conv(case, "im2col")(*args).numpy(), **TIGHT)


@given(case=winograd_cases())
@given_settings
def test_winograd_gradcheck(case):
    x, w, b = _arrays(case)
    check_grad(_conv(case, "winograd"), [x, w, b], "cpu")


@given(case=winograd_cases())
@given_settings
def test_winograd_gradients_match_im2col(case):
    """The backward is the adjoint of each Winograd step, not im2col's: both must give the same numbers."""
    x, w, b = _arrays(case)
    gy = rng_for(case["seed"] + 1).standard_normal(ref.conv2d(x, w, b, 1, case["padding"]).shape)
    grads = []
    for algorithm in ("winograd", "im2col"):
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
        got = _conv(case, "winograd")(*(None if a is None else tensor(a, "cpu") for a in (x, w, b)))
        assert_close(got, ref.conv2d(x, w, b, 1, case["padding"]), **TIGHT)
        check_grad(_conv(case, "winograd"), [x, w, b], "cpu")
    finally:
        minires.set_num_threads(before)


def test_winograd_gradcheck_input_only_and_weight_only():
    rng = rng_for(2)
    x, w = rng.standard_normal((2, 2, 5, 4)), rng.standard_normal((3, 2, 3, 3))
    fn = lambda x, w: F.conv2d(x, w, padding=1, algorithm="winograd")  # noqa: E731
    check_grad(fn, [x, w], "cpu", requires_grad=[True, False])
    check_grad(fn, [x, w], "cpu", requires_grad=[False, True])


def test_winograd_float32_stays_float32():
    rng = rng_for(1)
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    check_float32(lambda x, w, b: F.conv2d(x, w, b, padding=1, algorithm="winograd"), [x, w, b], "cpu")


def test_winograd_float32_error_is_that_of_im2col():
    """Documented in benchmarks/README.md: at a ResNet shape (16 channels, 16x16, He-initialised
    weights) the float32 error of both algorithms, relative to the largest float64 output, is
    a few 1e-7; Winograd's transforms add at most a small factor."""
    rng = rng_for(3)
    x = rng.standard_normal((4, 16, 16, 16))
    w = rng.standard_normal((16, 16, 3, 3)) * np.sqrt(2 / (9 * 16))
    exact = ref.conv2d(x, w, None, 1, 1)
    errors = {}
    for algorithm in ("im2col", "winograd"):
        y = F.conv2d(tensor(x.astype(np.float32), "cpu"), tensor(w.astype(np.float32), "cpu"), padding=1,
                     algorithm=algorithm).numpy()
        errors[algorithm] = np.abs(y - exact).max() / np.abs(exact).max()
    assert errors["im2col"] < 1e-6 and errors["winograd"] < 2e-6
    assert errors["winograd"] < 4 * errors["im2col"], errors


def test_transforms_match_the_textbook_matrices():
    """V = B^T d B for each 4x4 tile d, U = G g G^T, y = A^T M A, written with the matrices."""
    rng = rng_for(4)
    n, c, o, h, w, p = 2, 3, 2, 5, 6, 1
    x, g = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, 3, 3))
    oh, ow = h + 2 * p - 2, w + 2 * p - 2
    grid = wg.TileGrid(c, n, oh, ow)
    v = wg.input_transform(wg.to_parity_planes(x, grid, p, p), grid).reshape(4, 4, c, n, grid.th + 1, grid.tw + 1)
    u = wg.weight_transform(g).reshape(4, 4, o, c)
    m = np.einsum("abok,abkntx->abontx", u, v)
    y = np.empty((o, n, oh, ow))
    wg.output_transform(m.reshape(16, o, grid.tiles), grid, y)
    padded = np.zeros((n, c, 2 * grid.th + 2, 2 * grid.tw + 2))
    padded[:, :, p:p + h, p:p + w] = x
    for i in range(n):
        for ty in range(grid.th):
            for tx in range(grid.tw):
                for ch in range(c):
                    d = padded[i, ch, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4]
                    np.testing.assert_allclose(v[:, :, ch, i, ty, tx], wg.B_T @ d @ wg.B_T.T, atol=1e-12)
                block = wg.A_T @ m[:, :, :, i, ty, tx].transpose(2, 0, 1) @ wg.A_T.T
                np.testing.assert_allclose(y[:, i, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2],
                                           block[:, :oh - 2 * ty, :ow - 2 * tx], atol=1e-12)
    for oo in range(o):
        for ch in range(c):
            np.testing.assert_allclose(u[:, :, oo, ch], wg.G @ g[oo, ch] @ wg.G.T, atol=1e-12)


def test_auto_picks_winograd_only_where_it_applies_and_measured_faster():
    x = np.zeros((2, 16, 8, 8))
    assert conv.choose_algorithm(x, np.zeros((16, 16, 3, 3)), (1, 1), (1, 1)) == "winograd"
    assert conv.choose_algorithm(x, np.zeros((16, 16, 3, 3)), (2, 2), (1, 1)) == "im2col"
    assert conv.choose_algorithm(x, np.zeros((16, 16, 1, 1)), (1, 1), (0, 0)) == "im2col"
    assert conv.choose_algorithm(np.zeros((2, 3, 32, 32)), np.zeros((16, 3, 3, 3)), (1, 1), (1, 1)) == "im2col"
    assert conv.choose_algorithm(x, np.zeros((16, 16, 3, 3)), (1, 1), (0, 0)) == "im2col"  # 6x6 output
    assert conv.choose_algorithm(np.zeros((2, 128, 8, 8)), np.zeros((8, 128, 3, 3)), (1, 1), (1, 1)) == "im2col"


def test_default_algorithm_switch():
    before = conv.default_algorithm
    try:
        x = minires.Tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
        conv.set_default_algorithm("im2col")
        y = F.conv2d(x, np.ones((1, 1, 3, 3)), padding=1)
        assert y._ctx.algorithm == "im2col"
        conv.set_default_algorithm("winograd")
        y = F.conv2d(x, np.ones((1, 1, 3, 3)), padding=1)
        assert y._ctx.algorithm == "winograd"
        with pytest.raises(ValueError, match="set_default_algorithm: algorithm must be one of"):
            conv.set_default_algorithm("fft")
    finally:
        conv.set_default_algorithm(before)


def test_bad_algorithm_is_a_clear_error():
    x, w = np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match="conv2d: algorithm must be one of"):
        F.conv2d(x, w, algorithm="fft")
    with pytest.raises(ValueError, match="conv2d: algorithm 'winograd' needs a 3x3 kernel and stride 1"):
        F.conv2d(x, w, stride=2, algorithm="winograd")
    with pytest.raises(ValueError, match="needs a 3x3 kernel"):
        F.conv2d(x, np.ones((1, 1, 5, 5)), algorithm="winograd")
