"""minires.set_num_threads: one setting for the CPU threads; results do not depend on it."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import minires
import minires.functional as F
from minires.threads import parallel_map


@pytest.fixture
def restore_threads():
    before = minires.get_num_threads()
    yield
    minires.set_num_threads(before)


def test_set_and_get_num_threads(restore_threads):
    minires.set_num_threads(3)
    assert minires.get_num_threads() == 3
    assert parallel_map(lambda i: i * i, range(7)) == [i * i for i in range(7)]


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_num_threads_rejects_non_positive_ints(bad):
    with pytest.raises(ValueError, match="set_num_threads: n must be a positive int"):
        minires.set_num_threads(bad)


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
def test_conv2d_is_the_same_on_one_and_on_several_threads(restore_threads, monkeypatch, algorithm):
    """The batch chunks run on worker threads; each chunk computes the same numbers wherever it
    runs, and dW's per-chunk shares are summed in chunk order, so the results are bit for bit
    those of one thread (one image per chunk here, so the chunking does not change either)."""
    import minires.cpu_kernels.conv as conv
    import minires.cpu_kernels.winograd as winograd
    monkeypatch.setattr(conv, "CHUNK_BYTES", 1)
    monkeypatch.setattr(conv, "MIN_ROWS", 1)
    monkeypatch.setattr(winograd, "CHUNK_BYTES", 1)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((5, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    gy = rng.standard_normal((5, 4, 7, 6))
    results = []
    for n in (1, 3):
        minires.set_num_threads(n)
        xt, wt = minires.Tensor(x, requires_grad=True), minires.Tensor(w, requires_grad=True)
        y = F.conv2d(xt, wt, padding=1, algorithm=algorithm)
        y.backward(gy)
        results.append((y.numpy(), np.asarray(xt.grad), np.asarray(wt.grad)))
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@given(n=st.integers(0, 300), pieces=st.integers(1, 9), align=st.sampled_from([1, 4, 16]))
def test_splits_cover_the_range_in_order(n, pieces, align):
    from minires.threads import _splits
    slices = _splits(n, pieces, align)
    assert len(slices) <= pieces
    assert slices[0].start == 0 and slices[-1].stop == n
    for a, b in zip(slices, slices[1:]):
        assert a.stop == b.start and (a.stop - a.start) % align == 0 and a.stop > a.start


def _layouts(shape, rng):
    """The same values as a C-contiguous array, as a channel-major (C, N, H, W) one and as a
    channels-last (N, H, W, C) one, each seen as NCHW."""
    a = rng.standard_normal(shape)
    return {"nchw": a, "channel-major": np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3),
            "channels-last": np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)}


def test_for_each_piece_gives_each_thread_a_stretch_of_shared_layouts(restore_threads, monkeypatch):
    import minires.threads as threads
    monkeypatch.setattr(threads, "MIN_SPLIT_BYTES", 0)
    minires.set_num_threads(3)
    a = _layouts((4, 5, 6, 7), np.random.default_rng(0))
    seen = threads.for_each_piece(lambda x, y: (x.ndim, x.size, np.shares_memory(x, a["channel-major"])),
                                  a["channel-major"], np.empty_like(a["channel-major"]))
    assert [s[0] for s in seen] == [1, 1, 1] and sum(s[1] for s in seen) == a["nchw"].size and all(s[2] for s in seen)
    # layouts that differ: one call on the arrays as they are
    seen = threads.for_each_piece(lambda x, y: (x.shape, y.shape), a["channel-major"], a["nchw"])
    assert seen == [((4, 5, 6, 7), (4, 5, 6, 7))]
    minires.set_num_threads(1)
    assert len(threads.for_each_piece(lambda x: x.size, a["nchw"])) == 1


@pytest.mark.parametrize("layout", ["nchw", "channel-major", "channels-last"])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_relu_add_are_the_same_on_one_and_on_several_threads(restore_threads, monkeypatch, layout, training):
    """Batch norm splits its channels, ReLU and the residual add their memory over the threads:
    every element and every per-channel sum is computed as on one thread, so bit for bit."""
    import minires.cpu_kernels.norm as norm
    import minires.threads as threads
    monkeypatch.setattr(threads, "MIN_SPLIT_BYTES", 0)
    monkeypatch.setattr(norm, "BLOCK_BYTES", 64)  # channels-last: several blocks of wide rows
    rng = np.random.default_rng(1)
    x = _layouts((6, 5, 4, 3), rng)[layout]
    other = _layouts((6, 5, 4, 3), rng)  # added in both layouts: shared and differing
    gamma, beta, gy = rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal((6, 5, 4, 3))
    results = []
    for n in (1, 3):
        minires.set_num_threads(n)
        xt = minires.Tensor(x, requires_grad=True)
        g, b = minires.Tensor(gamma, requires_grad=True), minires.Tensor(beta, requires_grad=True)
        rm, rv = np.zeros(5), np.full(5, 1.5)
        h = F.relu(F.batch_norm(xt, rm, rv, g, b, training=training))
        y = h + minires.Tensor(other["nchw"]) + minires.Tensor(other["channel-major"]) + h
        y.backward(gy)
        results.append([y.numpy(), rm, rv] + [np.asarray(t.grad) for t in (xt, g, b)])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("threads_", [1, 3])
@pytest.mark.parametrize("size", [5, 1023, 1024, 3000])
def test_relu_forward_matches_numpy_maximum_at_any_size(restore_threads, monkeypatch, threads_, size):
    """ReLU reads 1-D memory as rows of 1024 against a row of zeros (a faster NumPy loop), the
    remainder with the scalar: the same values as np.maximum(x, 0), NaN and infinities included."""
    import minires.threads as threads
    monkeypatch.setattr(threads, "MIN_SPLIT_BYTES", 0)
    minires.set_num_threads(threads_)
    x = np.random.default_rng(2).standard_normal(size).astype(np.float32)
    x[::7] = np.nan
    x[1::11] = -np.inf
    x[2::13] = np.inf
    np.testing.assert_array_equal(F.relu(minires.Tensor(x)).numpy(), np.maximum(x, 0))


def test_parallel_map_keeps_order_and_raises_what_any_thread_raised(restore_threads):
    minires.set_num_threads(3)

    def square(i):
        return i * i
    assert parallel_map(square, range(50)) == [i * i for i in range(50)]
    assert parallel_map(square, []) == [] and parallel_map(square, [7]) == [49]

    def fails_on(bad):
        def fn(i):
            if i == bad:
                raise KeyError(f"item {i}")
            return i
        return fn
    for bad in (0, 49):  # the first item (the calling thread's) and the last (likely a worker's)
        with pytest.raises(KeyError, match=f"item {bad}"):
            parallel_map(fails_on(bad), range(50))
    minires.set_num_threads(1)
    assert parallel_map(square, range(5)) == [0, 1, 4, 9, 16]


def test_gradients_keep_the_channel_major_layout_of_the_activations():
    """ReLU's dx takes y's layout whatever dy's (the pooling's broadcast dy is NCHW), option A's
    slicing and padding keep x's: so the gradients added up along the residual stream stay
    channel-major, the layout the threads split and batch norm reads without a copy."""
    from minires.backend import memory_order, zeros_in_order
    rng = np.random.default_rng(3)
    cm = _layouts((4, 6, 8, 8), rng)["channel-major"]
    assert memory_order(cm) == (1, 0, 2, 3) and memory_order(np.zeros((2, 3))) == (0, 1)
    z = zeros_in_order((4, 6, 8, 8), (1, 0, 2, 3), np.float32)
    assert z.shape == (4, 6, 8, 8) and memory_order(z) == (1, 0, 2, 3) and not z.any()

    # each op's backward as the engine calls it on NumPy data, directly (a leaf's .grad is a
    # C-ordered copy); ReLU's is its CPU kernel: the reference makes no promise on layouts
    x = minires.Tensor(cm, requires_grad=True)
    gx = F.relu(x)._ctx.backward_cpu(np.ones((4, 6, 8, 8)))  # a C-contiguous dy
    assert memory_order(gx) == (1, 0, 2, 3)

    half = x[:, :, ::2, ::2]
    padded = F.pad(half, (0, 0, 0, 0, 3, 3))  # option A: zero channels around the subsampled input
    assert memory_order(padded.numpy()) == (1, 0, 2, 3)
    gx = half._ctx.backward_cpu(np.ones(half.shape))
    assert memory_order(gx) == (1, 0, 2, 3)
    np.testing.assert_array_equal(gx[:, :, ::2, ::2], 1)
    assert gx.sum() == 4 * 6 * 4 * 4
