"""minires.set_num_threads: one setting for the CPU threads; results do not depend on it."""
import numpy as np
import pytest

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
    import minires.ops.conv as conv
    import minires.ops.winograd as winograd
    monkeypatch.setattr(conv, "CHUNK_BYTES", 1)
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
