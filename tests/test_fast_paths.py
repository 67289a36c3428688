"""Every CPU fast path (minires/cpu_kernels) against its op's reference (minires/ops).

For drawn shapes and settings, in three memory layouts of the input and of dy (NCHW;
channel-major, as the reference conv's outputs are; channels-last, as the CPU conv kernels' are)
and on 1 and 3 threads, the same computation runs twice, under ``use_reference()`` and on the
fast path, and the outputs and every input gradient must agree to float64 rounding. Chunks and
batch norm's blocks are forced small and the threads' size threshold to zero, so that the chunk
loops and the thread splits really run on these small shapes. The engine's choice is checked too: the
reference run must record path "reference", the fast one "cpu".
"""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minires
import minires.cpu_kernels.conv as conv_kernels
import minires.cpu_kernels.norm as norm_kernels
import minires.cpu_kernels.winograd as winograd_kernels
import minires.functional as F
import minires.threads as threads
from minires import Tensor, use_reference
from opcheck import given_settings, rng_for

CLOSE = dict(rtol=1e-9, atol=1e-11)  # float64: only the order of the sums differs
LAYOUTS = ("nchw", "channel-major", "channels-last")


def in_layout(a, layout):
    """``a`` (N, C, ...) as C-contiguous memory, as channel-major (C, N, ...) memory or as
    channels-last (N, ..., C) memory, seen as (N, C, ...)."""
    if layout == "nchw" or a.ndim < 2:
        return np.ascontiguousarray(a)
    if layout == "channel-major":
        order = inverse = (1, 0) + tuple(range(2, a.ndim))
    else:
        order = (0,) + tuple(range(2, a.ndim)) + (1,)
        inverse = tuple(int(i) for i in np.argsort(order))
    return np.ascontiguousarray(a.transpose(order)).transpose(inverse)


def run(fn, arrays, gy_seed, gy_layout):
    """(output, gradients of every array input) of ``fn`` on Tensors of ``arrays``, and the path it
    took; dy comes in ``gy_layout``, whatever y's."""
    tensors = [None if a is None else Tensor(a, requires_grad=True) for a in arrays]
    y = fn(*tensors)
    path = y.grad_fn.path  # before backward frees the op
    y.backward(in_layout(rng_for(gy_seed).standard_normal(y.shape), gy_layout))
    return y.numpy(), [None if t is None else t.grad for t in tensors], path


def assert_fast_matches_reference(fn, arrays, n_threads, chunk_bytes=1, gy_layout="nchw"):
    """Run ``fn`` on the reference and on the fast path (small chunks, every array split among
    ``n_threads`` threads) and compare."""
    saved = (minires.get_num_threads(), threads.MIN_SPLIT_BYTES, conv_kernels.CHUNK_BYTES,
             winograd_kernels.CHUNK_BYTES, norm_kernels.BLOCK_BYTES, conv_kernels.MIN_ROWS)
    try:
        minires.set_num_threads(n_threads)
        threads.MIN_SPLIT_BYTES = 0
        conv_kernels.CHUNK_BYTES = winograd_kernels.CHUNK_BYTES = norm_kernels.BLOCK_BYTES = chunk_bytes
        conv_kernels.MIN_ROWS = 1  # the chunk size alone decides: small chunks stay small
        with use_reference():
            expected, expected_grads, ref_path = run(fn, arrays, 1, gy_layout)
        with use_reference(False):
            got, grads, fast_path = run(fn, arrays, 1, gy_layout)
    finally:
        minires.set_num_threads(saved[0])
        (threads.MIN_SPLIT_BYTES, conv_kernels.CHUNK_BYTES, winograd_kernels.CHUNK_BYTES,
         norm_kernels.BLOCK_BYTES, conv_kernels.MIN_ROWS) = saved[1:]
    assert (ref_path, fast_path) == ("reference", "cpu")
    np.testing.assert_allclose(got, expected, **CLOSE, err_msg="output")
    for i, (g, e) in enumerate(zip(grads, expected_grads)):
        if e is not None:
            np.testing.assert_allclose(g, e, **CLOSE, err_msg=f"gradient of input {i}")


common = dict(layout=st.sampled_from(LAYOUTS), gy_layout=st.sampled_from(LAYOUTS), n_threads=st.sampled_from([1, 3]),
              seed=st.integers(0, 2**32 - 1))


@st.composite
def conv_cases(draw, winograd=False):
    n, c, o = draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 5))
    k = 3 if winograd else draw(st.integers(1, 3))
    stride = 1 if winograd else draw(st.integers(1, 2))
    pad = draw(st.integers(0, 2))
    h, w = draw(st.integers(max(1, k - 2 * pad), 9)), draw(st.integers(max(1, k - 2 * pad), 9))
    return dict(x=(n, c, h, w), w=(o, c, k, k), stride=stride, padding=pad, bias=draw(st.booleans()),
                chunk_bytes=draw(st.sampled_from([1, 2000, 10**8])))


def _conv_check(case, layout, gy_layout, n_threads, seed, algorithm):
    rng = rng_for(seed)
    x = in_layout(rng.standard_normal(case["x"]), layout)
    w = rng.standard_normal(case["w"])
    b = rng.standard_normal(case["w"][0]) if case["bias"] else None
    fn = lambda x, w, b: F.conv2d(x, w, b, stride=case["stride"], padding=case["padding"], algorithm=algorithm)  # noqa: E731
    assert_fast_matches_reference(fn, [x, w, b], n_threads, case["chunk_bytes"], gy_layout)


@given(case=conv_cases(), **common)
@given_settings
def test_im2col_kernel_matches_the_reference(case, layout, gy_layout, n_threads, seed):
    _conv_check(case, layout, gy_layout, n_threads, seed, "im2col")


@given(case=conv_cases(winograd=True), algorithm=st.sampled_from(["winograd", "winograd4"]), **common)
@given_settings
def test_winograd_kernels_match_the_reference(case, algorithm, layout, gy_layout, n_threads, seed):
    _conv_check(case, layout, gy_layout, n_threads, seed, algorithm)


@given(shape=st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 5), st.integers(1, 5)),
       training=st.booleans(), affine=st.booleans(), running=st.booleans(), **common)
@given_settings
def test_batch_norm_kernels_match_the_reference(shape, training, affine, running, layout, gy_layout, n_threads, seed):
    n, c, h, w = shape
    assume(n * h * w >= 2 and (running or training))
    rng = rng_for(seed)
    x = in_layout(rng.standard_normal(shape) * 2 + 1, layout)
    gamma, beta = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    stats = {}

    def fn(x, gamma, beta):  # fresh running statistics per run: training updates them in place
        rm, rv = (rng_for(0).standard_normal(c), rng_for(1).uniform(0.5, 2, c)) if running else (None, None)
        y = F.batch_norm(x, rm, rv, gamma, beta, training=training, momentum=0.3)
        stats.setdefault("runs", []).append((rm, rv))
        return y

    assert_fast_matches_reference(fn, [x, gamma, beta], n_threads, gy_layout=gy_layout)
    (ref_mean, ref_var), (fast_mean, fast_var) = stats["runs"]
    if running:  # the running-statistics update too
        np.testing.assert_allclose(fast_mean, ref_mean, **CLOSE)
        np.testing.assert_allclose(fast_var, ref_var, **CLOSE)


@pytest.mark.parametrize("gy_layout", LAYOUTS)
@pytest.mark.parametrize("n_threads", [1, 3])
def test_batch_norm_reads_channels_last_memory_as_wide_rows(n_threads, gy_layout):
    """Channels-last activations (the CPU convs' output) take batch norm's wide-row kernels:
    72 pixels x 5 channels are read as 6 rows of 12 pixels each, in blocks of one row."""
    rng = rng_for(7)
    x = in_layout(rng.standard_normal((6, 5, 4, 3)) * 2 + 1, "channels-last")
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    assert norm_kernels._Wide(x.transpose(1, 0, 2, 3).reshape(5, -1)).rows.shape == (6, 60)
    for training in (True, False):
        fn = lambda x, g, b: F.batch_norm(x, np.zeros(5), np.ones(5), g, b, training=training)  # noqa: E731
        assert_fast_matches_reference(fn, [x, gamma, beta], n_threads, gy_layout=gy_layout)


@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 7), st.integers(1, 7)),
       layout_b=st.sampled_from(LAYOUTS), **common)
@given_settings
def test_relu_and_add_kernels_match_the_reference(shape, layout_b, layout, gy_layout, n_threads, seed):
    rng = rng_for(seed)
    a, b = in_layout(rng.standard_normal(shape), layout), in_layout(rng.standard_normal(shape), layout_b)
    for fn, arrays in ((lambda a, b: F.relu(a) + b, [a, b]), (F.relu, [a]), (F.add, [a, b])):
        assert_fast_matches_reference(fn, arrays, n_threads, gy_layout=gy_layout)


def test_relu_kernel_covers_its_row_trick():
    """Arrays past 1024 elements take the rows-against-zeros loop, and a tail beyond whole rows."""
    x = rng_for(5).standard_normal(3 * 1024 + 17).reshape(1, 1, 1, -1)
    for n_threads in (1, 3):
        assert_fast_matches_reference(F.relu, [x], n_threads)


@pytest.mark.parametrize("enabled", [True, False])
def test_use_reference_is_a_switch_and_a_block(enabled):
    before = minires.is_reference()
    try:
        minires.use_reference(enabled)
        assert minires.is_reference() is enabled
        with minires.use_reference(not enabled):
            assert minires.is_reference() is (not enabled)
            y = F.relu(Tensor(np.ones((2, 2)), requires_grad=True))
            assert y.grad_fn.path == ("cpu" if enabled else "reference")
        assert minires.is_reference() is enabled
    finally:
        minires.use_reference(before)
    with pytest.raises(TypeError, match="use_reference: enabled must be True or False"):
        minires.use_reference("yes")


def test_minires_reference_in_the_environment(tmp_path):
    """MINIRES_REFERENCE=1 starts a program on the reference ops; any other value than 0/1 is refused."""
    import os
    import subprocess
    import sys
    code = "import minires, minires.functional as F; print(minires.is_reference(), F.relu(minires.Tensor([1.0], requires_grad=True)).grad_fn.path)"
    env = dict(os.environ, MINIRES_REFERENCE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "reference"]
    env["MINIRES_REFERENCE"] = "yes"
    bad = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "MINIRES_REFERENCE must be 1 (reference ops) or 0 (fast paths), got 'yes'" in bad.stderr


@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_gpu_path_wiring_on_numpy_stand_ins(monkeypatch, affine):
    """The GPU path of batch norm (forward_gpu/backward_gpu) run on NumPy data, with the fused
    kernels replaced by NumPy stand-ins of their documented formulas: checks, without a GPU, that
    the op hands each pure kernel the right arrays and settings (the CUDA itself runs only where a
    GPU answers: tests/test_fused_kernels.py)."""
    import types

    import minires.ops.norm as norm

    def update(mean, var, momentum, m, running_mean, running_var):
        running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        running_var[...] = (1 - momentum) * running_var + momentum * m / (m - 1) * var

    stand_ins = types.SimpleNamespace(
        batch_norm_inv_std=lambda var, eps: 1 / np.sqrt(var + eps),
        batch_norm_update_running_stats=update,
        batch_norm_normalize=lambda x2, mean, inv_std, w, b: ((x2 - mean[:, None]) * inv_std[:, None]
                                                              * (1 if w is None else w[:, None])
                                                              + (0 if b is None else b[:, None])),
        batch_norm_dx=lambda gy2, x2, mean, inv_std, w, sum_dy, sum_dy_xhat, m: (
            (1 if w is None else w[:, None]) * inv_std[:, None]
            * (gy2 - sum_dy[:, None] / m - (x2 - mean[:, None]) * inv_std[:, None] * sum_dy_xhat[:, None] / m)))
    monkeypatch.setattr(norm, "gpu_kernels", stand_ins)
    rng = rng_for(7)
    x, gy = rng.standard_normal((3, 4, 5, 5)), rng.standard_normal((3, 4, 5, 5))
    w, b = (rng.standard_normal(4), rng.standard_normal(4)) if affine else (None, None)
    results = []
    for path in ("reference", "gpu"):
        rm, rv = np.zeros(4), np.ones(4)
        op = norm.BatchNorm(True, 0.3, 1e-5, rm, rv)
        op.needs_input_grad = (True, affine, affine)
        forward, backward = (op.forward, op.backward) if path == "reference" else (op.forward_gpu, op.backward_gpu)
        y = forward(x, w, b)
        grads = [g for g, wanted in zip(backward(gy), op.needs_input_grad) if wanted]
        results.append((y, *grads, rm, rv))
    for got, expected in zip(results[1], results[0]):
        np.testing.assert_allclose(got, expected, **CLOSE)


def test_backward_takes_the_path_its_forward_took():
    """An op's backward needs what its own forward saved: switching use_reference between the
    forward and the backward must not mix the paths."""
    calls = []

    class Op(minires.Function):
        def forward(self, x):
            calls.append("forward")
            return x * 2

        def backward(self, gy):
            calls.append("backward")
            return gy * 2

        def forward_cpu(self, x):
            calls.append("forward_cpu")
            return x * 2

        def backward_cpu(self, gy):
            calls.append("backward_cpu")
            return gy * 2

    for reference in (True, False):
        x = Tensor(np.ones(3), requires_grad=True)
        with use_reference(reference):
            y = Op()(x)
        with use_reference(not reference):
            y.backward(np.ones(3))
        np.testing.assert_array_equal(x.grad, 2.0)
    assert calls == ["forward", "backward", "forward_cpu", "backward_cpu"]
