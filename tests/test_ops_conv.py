"""conv2d: forward against direct nested loops, backward by gradcheck, float32 kept."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minires.functional as F
import reference as ref
from opcheck import TIGHT, assert_close, check_float32, check_grad, given_settings, rng_for, tensor


@st.composite
def conv_cases(draw, max_in=150, max_w=120):
    """Shapes and hyperparameters with the kernel fitting the padded input, small enough
    for finite differences (at most a few hundred elements)."""
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 3))
    o = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    # The kernel must fit the padded input: H + 2*ph >= kh.
    h = draw(st.integers(max(1, kh - 2 * ph), max(1, kh - 2 * ph) + 6))
    w = draw(st.integers(max(1, kw - 2 * pw), max(1, kw - 2 * pw) + 6))
    assume(n * c * h * w <= max_in and o * c * kh * kw <= max_w)
    bias = draw(st.booleans())
    stride = draw(st.sampled_from([(sh, sw), sh])) if sh == sw else (sh, sw)
    padding = draw(st.sampled_from([(ph, pw), ph])) if ph == pw else (ph, pw)
    return dict(x=(n, c, h, w), w=(o, c, kh, kw), bias=bias, stride=stride, padding=padding, seed=draw(st.integers(0, 2**32 - 1)))


def _arrays(case):
    rng = rng_for(case["seed"])
    x = rng.standard_normal(case["x"])
    w = rng.standard_normal(case["w"])
    b = rng.standard_normal(case["w"][0]) if case["bias"] else None
    return x, w, b


@given(case=conv_cases())
@given_settings
def test_conv2d_forward_matches_nested_loops(device, case):
    x, w, b = _arrays(case)
    got = F.conv2d(tensor(x, device), tensor(w, device), None if b is None else tensor(b, device),
                   stride=case["stride"], padding=case["padding"])
    assert_close(got, ref.conv2d(x, w, b, case["stride"], case["padding"]), **TIGHT)


@given(case=conv_cases())
@given_settings
def test_conv2d_gradcheck(device, case):
    x, w, b = _arrays(case)
    check_grad(lambda x, w, b: F.conv2d(x, w, b, stride=case["stride"], padding=case["padding"]), [x, w, b], device)


def test_conv2d_float32_stays_float32(device):
    rng = rng_for(1)
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    check_float32(lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 2)), [x, w, b], device)


def test_conv2d_gradcheck_input_only_and_weight_only(device):
    """Each gradient is computed only when asked for; the others must still be right."""
    rng = rng_for(2)
    x, w = rng.standard_normal((1, 2, 5, 4)), rng.standard_normal((3, 2, 3, 3))
    fn = lambda x, w: F.conv2d(x, w, padding=1)  # noqa: E731
    check_grad(fn, [x, w], device, requires_grad=[True, False])
    check_grad(fn, [x, w], device, requires_grad=[False, True])


def test_conv2d_of_a_conv_output(device):
    """Conv outputs are NCHW views of channel-major memory; a second conv (unpadded, 1x1,
    which reads that memory without copying) and its backward must still be right."""
    rng = rng_for(3)
    x = rng.standard_normal((2, 2, 4, 5))
    w1, w2, w3 = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((4, 3, 1, 1)), rng.standard_normal((2, 4, 2, 2))

    def net(x, w1, w2, w3):
        return F.conv2d(F.conv2d(F.conv2d(x, w1, padding=1), w2), w3, stride=2)

    got = net(*(tensor(a, device) for a in (x, w1, w2, w3)))
    expected = ref.conv2d(ref.conv2d(ref.conv2d(x, w1, None, 1, 1), w2), w3, None, 2, 0)
    assert_close(got, expected, **TIGHT)
    check_grad(net, [x, w1, w2, w3], device)


def test_conv2d_output_is_ordinary_nchw(device):
    """Whatever its memory layout, the output indexes like an (N, O, OH, OW) array."""
    rng = rng_for(4)
    x, w = rng.standard_normal((2, 1, 3, 3)), rng.standard_normal((3, 1, 1, 1))
    y = F.conv2d(tensor(x, device), tensor(w, device))
    assert y.shape == (2, 3, 3, 3)
    assert_close(y.numpy()[1, 2], x[1, 0] * w[2, 0, 0, 0], **TIGHT)
    assert_close(F.reshape(y, (2, -1)), ref.conv2d(x, w).reshape(2, -1), **TIGHT)


@given(case=conv_cases())
@given_settings
def test_conv2d_in_batch_chunks_matches_loops_and_gradcheck(device, case, monkeypatch):
    """On the CPU the batch is processed in chunks of CHUNK_BYTES of columns; with 1 byte every
    image is its own chunk (no floor on the rows), so the chunk loop (forward and backward) is exercised."""
    import minires.cpu_kernels.conv as conv_kernels
    monkeypatch.setattr(conv_kernels, "CHUNK_BYTES", 1)
    monkeypatch.setattr(conv_kernels, "MIN_ROWS", 1)
    x, w, b = _arrays(case)
    got = F.conv2d(tensor(x, device), tensor(w, device), None if b is None else tensor(b, device),
                   stride=case["stride"], padding=case["padding"])
    assert_close(got, ref.conv2d(x, w, b, case["stride"], case["padding"]), **TIGHT)
    check_grad(lambda x, w, b: F.conv2d(x, w, b, stride=case["stride"], padding=case["padding"]), [x, w, b], device)


def test_batch_chunks_cover_the_batch_once():
    import numpy as np

    from minires.cpu_kernels.chunks import batch_chunks
    for chunk_bytes in (1, 100, 1000, 10**6):
        chunks = batch_chunks(10, bytes_per_image=27 * 16 * 4, chunk_bytes=chunk_bytes)
        assert [i for sl in chunks for i in range(10)[sl]] == list(range(10)), chunk_bytes
    assert batch_chunks(0, 100, 100) == [slice(0, 0)]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batch_chunks_hold_min_images_yet_feed_every_thread(threads, monkeypatch):
    """16 images of 100 bytes in 100-byte chunks would be 16 chunks; with at least 11 images a
    chunk, one chunk, except that every thread still gets one (the floor gives way to threads)."""
    import minires.cpu_kernels.chunks as chunks
    monkeypatch.setattr(chunks, "get_num_threads", lambda: threads)
    assert len(chunks.batch_chunks(16, 100, 100)) == 16
    got = chunks.batch_chunks(16, 100, 100, min_images=11)
    assert [i for sl in got for i in range(16)[sl]] == list(range(16))
    assert len(got) == threads
    assert max(sl.stop - sl.start for sl in got) == -(-16 // threads)  # as equal as the images allow
    assert len(chunks.batch_chunks(16, 100, 100, min_images=4)) == {1: 4, 2: 4, 3: 6}[threads]


@pytest.mark.parametrize("algorithm", ["im2col", "winograd"])
def test_conv2d_on_an_empty_batch(algorithm):
    """N = 0 gives an empty output and zero weight gradients, as in PyTorch (not a division by zero)."""
    x = tensor(np.zeros((0, 8, 6, 6)), "cpu", requires_grad=True)
    w = tensor(np.ones((4, 8, 3, 3)), "cpu", requires_grad=True)
    y = F.conv2d(x, w, padding=1, algorithm=algorithm)
    assert y.shape == (0, 4, 6, 6)
    y.sum().backward()
    assert x.grad.shape == (0, 8, 6, 6) and w.grad.shape == (4, 8, 3, 3) and not w.grad.any()
