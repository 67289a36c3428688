"""Batch norm's passes over channel rows, each worker thread on a block of channels.

The op (``minires/ops/norm.py``) keeps the statistics, the running-statistics update and the
state; these kernels do the array passes in between, on the (C, m) channel rows (m = N*H*W) of
channel-major activations. Rows are split among the threads (``threads.for_each_row_block``),
so each per-channel sum is that of one thread, bit for bit, whatever the thread count (arrays
under 256 KB stay on one thread: GIL hand-offs; benchmarks/README.md, "Round three", item 2).
Passes are in place where the reference makes temporaries: x - mean is written once and scaled
in place, and dx is assembled in the buffer of x - mean. What it buys (benchmarks/README.md,
per-op profile of ResNet-20 at batch 128): a second thread takes batch norm's backward from
23.3 to 18.7 ms a step and its forward from 15.6 to 14.5 (1.3-1.7x on one 8 MB array alone:
inside a step the passes are bound by memory bandwidth). The einsum reductions avoid an
(x - mean)^2 or dy * (x - mean) temporary; they sum in one running total per channel, so in
float32 they round more than the reference's pairwise ``sum``.
"""
import numpy as np

from ..threads import for_each_row_block


def row_sums(x2):
    """Per-row sums of x2 (C, m): (C,)."""
    sums = np.empty(x2.shape[0], dtype=x2.dtype)
    for_each_row_block(lambda r: x2[r].sum(axis=1, out=sums[r]), x2)
    return sums


def centre(x2, mean, with_sum_sq=True):
    """(x2 - mean per row, its per-row sums of squares or None): without an (x - mean)^2 temporary."""
    xc = np.empty(x2.shape, dtype=x2.dtype)  # laid out as x2: channel-major like the activations
    sum_sq = np.empty(x2.shape[0], dtype=x2.dtype) if with_sum_sq else None

    def centre_rows(r):
        np.subtract(x2[r], mean[r, None], out=xc[r])
        if with_sum_sq:
            sum_sq[r] = np.einsum("cm,cm->c", xc[r], xc[r])

    for_each_row_block(centre_rows, x2)
    return xc, sum_sq


def scale_shift_(rows, scale, shift):
    """rows = rows * scale + shift per row (shift may be None), in place: y = gamma * x_hat + beta
    from x - mean with scale = gamma / std. Two passes, no new array. Returns rows."""
    def scale_rows(r):
        rows[r] *= scale[r, None]
        if shift is not None:
            rows[r] += shift[r, None]

    for_each_row_block(scale_rows, rows)
    return rows


def grad_sums(gy2, x2, mean, inv_std, want_dbeta, want_dgamma):
    """(sum(dy), sum(dy * x_hat), x - mean) per row, the first two None unless wanted, the
    third None unless dgamma is (x_hat recomputed from x: x is kept by the graph anyway)."""
    c = gy2.shape[0]
    gbeta = np.empty(c, dtype=gy2.dtype) if want_dbeta else None
    ggamma = np.empty(c, dtype=gy2.dtype) if want_dgamma else None
    xc = np.empty(gy2.shape, dtype=gy2.dtype) if want_dgamma else None

    def sums(r):
        if want_dbeta:
            gy2[r].sum(axis=1, out=gbeta[r])
        if want_dgamma:
            np.subtract(x2[r], mean[r, None], out=xc[r])
            ggamma[r] = np.einsum("cm,cm->c", gy2[r], xc[r]) * inv_std[r]  # no dy * xc temporary

    for_each_row_block(sums, gy2)
    return gbeta, ggamma, xc


def input_grad_(xc, gy2, k_xc, k_1, scale):
    """dx = dy * scale + (x - mean) * k_xc + k_1 per row, in place in xc (x - mean): the training-
    mode dx = scale * (dy - sum(dy)/m - x_hat * sum(dy * x_hat)/m) with its constants folded into
    the per-row k_xc = -scale * inv_std * sum(dy * x_hat)/m and k_1 = -scale * sum(dy)/m. Returns xc."""
    def dx(r):
        xc[r] *= k_xc[r, None]
        xc[r] += k_1[r, None]
        xc[r] += gy2[r] * scale[r, None]

    for_each_row_block(dx, xc)
    return xc
