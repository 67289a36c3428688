"""Batch norm's passes on the worker threads, for channel-major and channels-last activations.

The op (``minires/ops/norm.py``) keeps the statistics, the running-statistics update and the
state; these kernels do the array passes in between. They take x as the op's (C, m) channel
rows (m = N*H*W) and follow the memory under them:

* **channel-major** (C, N, H, W) memory, as the reference conv makes: each row is contiguous.
  Rows are split among the threads (``threads.for_each_row_block``), so each per-channel sum is
  that of one thread.
* **channels-last** (N, H, W, C) memory, as the CPU conv kernels make (``conv.py``): the rows
  are the columns of a contiguous (m, C) matrix. Per-channel constants repeated along a row
  would make NumPy loop over C = 16-64 elements at a time (5x slower than channel-major on
  ResNet-20's shapes); so the matrix is read as wide rows of ``r`` pixels (about 1024 values),
  against constants tiled ``r`` times, and cut into blocks of ``BLOCK_BYTES`` that the threads
  take in turn. Each block's column sums are added in block order.

Either way the blocks do not depend on the thread count, so every sum is bit for bit the same on
any number of threads (arrays under 256 KB stay on one thread: GIL hand-offs; benchmarks/README.md,
"Round three", item 2). Passes are in place where the reference makes temporaries: x - mean is
written once and scaled in place, and dx is assembled in the buffer of x - mean. The einsum
reductions avoid an (x - mean)^2 or dy * (x - mean) temporary; they sum in one running total
per channel, so in float32 they round more than the reference's pairwise ``sum``.
"""
import math

import numpy as np

from ..threads import for_each_row_block, parallel_map, _threads_for

WIDE = 1024  # about this many values per wide row of channels-last memory
BLOCK_BYTES = 2**20  # 1 MB blocks of wide rows: 256 KB and 2 MB measured up to 1.5x and 1.1x slower at 2 threads


class _Wide:
    """A (C, m) view of channels-last memory as wide rows: (m/r, r*C), r pixels per row."""

    def __init__(self, a2):
        c, m = a2.shape
        self.c, self.r = c, math.gcd(m, max(1, WIDE // c))
        self.rows = a2.T.reshape(m // self.r, self.r * c)
        per_block = max(1, BLOCK_BYTES // max(1, self.rows[:1].nbytes))
        self.blocks = [slice(a, a + per_block) for a in range(0, len(self.rows), per_block)] or [slice(0, 0)]
        self.threaded = _threads_for(a2) > 1

    def of(self, b2):
        """b2 (C, m), laid out as the array this was made from, as wide rows."""
        return b2.T.reshape(self.rows.shape)

    def tile(self, per_channel):
        """A per-channel (C,) constant repeated along a wide row."""
        return np.tile(per_channel, self.r)

    def run(self, fn):
        """fn(block) for each block, on the threads for large arrays; results in block order."""
        if self.threaded:
            return parallel_map(fn, self.blocks)
        return [fn(b) for b in self.blocks]

    def column_sums(self, partials):
        """Per-channel totals of the blocks' per-column sums, added in block order."""
        total = partials[0].copy()
        for p in partials[1:]:
            total += p
        return total.reshape(self.r, self.c).sum(axis=0)


def _is_channels_last(a2):
    """Whether the (C, m) array a2 is a view of channels-last memory: a contiguous (m, C) matrix
    that is not also a contiguous (C, m) one (as a single channel or a single pixel is)."""
    return a2.T.flags.c_contiguous and not a2.flags.c_contiguous


def _wide_rows(*arrays2):
    """A ``_Wide`` for the first array when every (C, m) array here is channels-last, else None."""
    return _Wide(arrays2[0]) if all(_is_channels_last(a) for a in arrays2) else None


def laid_out_as(a2, like2):
    """a2 (C, m) in like2's memory layout: itself when they already agree, else one copy."""
    if _is_channels_last(a2) == _is_channels_last(like2):
        return a2
    return np.ascontiguousarray(a2.T).T if _is_channels_last(like2) else np.ascontiguousarray(a2)


def row_sums(x2):
    """Per-row sums of x2 (C, m): (C,)."""
    wide = _wide_rows(x2)
    if wide is not None:
        return wide.column_sums(wide.run(lambda b: wide.rows[b].sum(axis=0)))
    sums = np.empty(x2.shape[0], dtype=x2.dtype)
    for_each_row_block(lambda r: x2[r].sum(axis=1, out=sums[r]), x2)
    return sums


def centre(x2, mean, with_sum_sq=True):
    """(x2 - mean per row, its per-row sums of squares or None): without an (x - mean)^2 temporary."""
    xc = np.empty_like(x2)  # laid out as x2, as the activations
    wide = _wide_rows(x2)
    if wide is not None:
        xw, mean_w = wide.of(xc), wide.tile(mean)

        def centre_block(b):
            np.subtract(wide.rows[b], mean_w, out=xw[b])
            return np.einsum("ij,ij->j", xw[b], xw[b]) if with_sum_sq else None

        partials = wide.run(centre_block)
        return xc, wide.column_sums(partials) if with_sum_sq else None

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
    wide = _wide_rows(rows)
    if wide is not None:
        scale_w, shift_w = wide.tile(scale), None if shift is None else wide.tile(shift)

        def scale_block(b):
            wide.rows[b] *= scale_w
            if shift_w is not None:
                wide.rows[b] += shift_w

        wide.run(scale_block)
        return rows

    def scale_rows(r):
        rows[r] *= scale[r, None]
        if shift is not None:
            rows[r] += shift[r, None]

    for_each_row_block(scale_rows, rows)
    return rows


def grad_sums(gy2, x2, mean, inv_std, want_dbeta, want_dgamma):
    """(sum(dy), sum(dy * x_hat), x - mean) per row, the first two None unless wanted, the
    third None unless dgamma is (x_hat recomputed from x: x is kept by the graph anyway).
    gy2 and x2 share one memory layout (``laid_out_as``)."""
    xc = np.empty_like(x2) if want_dgamma else None
    wide = _wide_rows(gy2, x2)
    if wide is not None:
        gw, xw, mean_w = wide.rows, wide.of(x2), wide.tile(mean)
        xcw = None if xc is None else wide.of(xc)

        def block_sums(b):
            dbeta = gw[b].sum(axis=0) if want_dbeta else None
            if want_dgamma:
                np.subtract(xw[b], mean_w, out=xcw[b])
                return dbeta, np.einsum("ij,ij->j", gw[b], xcw[b])
            return dbeta, None

        partials = wide.run(block_sums)
        gbeta = wide.column_sums([p[0] for p in partials]) if want_dbeta else None
        ggamma = wide.column_sums([p[1] for p in partials]) * inv_std if want_dgamma else None
        return gbeta, ggamma, xc

    c = gy2.shape[0]
    gbeta = np.empty(c, dtype=gy2.dtype) if want_dbeta else None
    ggamma = np.empty(c, dtype=gy2.dtype) if want_dgamma else None

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
    wide = _wide_rows(xc, gy2)
    if wide is not None:
        gw, k_xc_w, k_1_w, scale_w = wide.of(gy2), wide.tile(k_xc), wide.tile(k_1), wide.tile(scale)

        def dx_block(b):
            wide.rows[b] *= k_xc_w
            wide.rows[b] += k_1_w
            wide.rows[b] += gw[b] * scale_w

        wide.run(dx_block)
        return xc

    def dx(r):
        xc[r] *= k_xc[r, None]
        xc[r] += k_1[r, None]
        xc[r] += gy2[r] * scale[r, None]

    for_each_row_block(dx, xc)
    return xc
