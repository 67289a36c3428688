"""Checks for notebook 02 (convolution by im2col): im2col with loops, then as a strided view.

Both exercises take the channel-major padded input of ``minires.ops.conv`` and the geometry::

    padded (C, N, Hp, Wp), kh, kw, sh, sw, oh, ow

``check_im2col_loops(im2col_loops)``: the learner's loops must return the column matrix
(C*kh*kw, N*OH*OW) whose row (c, i, j) holds ``padded[c, n, y*sh + i, x*sw + j]`` in column
(n, y, x), exactly as the library's ``im2col``.

``check_window_view(window_view)``: the learner's function must return the (C, kh, kw, N, OH, OW)
array of windows as a *view* of ``padded`` (no copy: ``as_strided`` or ``sliding_window_view``),
which reshapes to the library's column matrix.
"""
import numpy as np

from ..ops.conv import conv_output_size, im2col, pad_channel_major
from .check import ExerciseFailed, check, compare, name_of, returned

# (N, C, H, W, kh, kw, (sh, sw), (ph, pw)): the first ones are square, where transposed kernel
# offsets or output pixels can be recognised; then strides, a 1x1 kernel, non-square kernels;
# the last two have unequal strides, kernel sides and input sides, so that sh and sw swapped
# fail: in the first, the swapped windows stay inside padded (the hint can name the mistake),
# in the second they run past its right edge.
CONFIGS = [(1, 1, 4, 4, 3, 3, (1, 1), (1, 1)), (2, 3, 5, 5, 3, 3, (1, 1), (1, 1)),
           (2, 2, 7, 7, 3, 3, (2, 2), (1, 1)), (1, 3, 5, 5, 1, 1, (2, 2), (0, 0)),
           (2, 2, 6, 8, 2, 3, (1, 1), (0, 0)), (1, 2, 7, 6, 3, 2, (2, 2), (1, 1)),
           (1, 2, 3, 11, 2, 3, (2, 3), (0, 0)), (2, 2, 9, 7, 3, 2, (2, 1), (1, 0))]


def _cases():
    """(description, padded, geometry, expected columns) for each config, float64 values all distinct."""
    rng = np.random.default_rng(0)
    for n, c, h, w, kh, kw, (sh, sw), (ph, pw) in CONFIGS:
        x = rng.permutation(n * c * h * w).reshape(n, c, h, w).astype(np.float64) + 1  # 0 is the padding
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        padded = pad_channel_major(x, ph, pw)
        geometry = (kh, kw, sh, sw, oh, ow)
        stride = f"stride {sh}" if sh == sw else f"strides sh={sh}, sw={sw}"
        what = f"padded {padded.shape}, kh={kh}, kw={kw}, {stride} (oh={oh}, ow={ow})"
        yield what, padded, geometry, im2col(padded, *geometry)


def _windows(padded, kh, kw, sh, sw, oh, ow):
    """The (C, kh, kw, N, OH, OW) windows of this geometry, or None where they would reach past
    padded's edges (what a wrong geometry can do; im2col itself does not check)."""
    if (oh - 1) * sh + kh > padded.shape[2] or (ow - 1) * sw + kw > padded.shape[3]:
        return None
    return im2col(padded, kh, kw, sh, sw, oh, ow).reshape(padded.shape[0], kh, kw, padded.shape[1], oh, ow)


def _im2col_hint(got, padded, geometry, expected):
    """Recognise the usual mistakes by rebuilding what they produce from the right answer."""
    kh, kw, sh, sw, oh, ow = geometry
    c, n = padded.shape[:2]
    got = np.asarray(got)
    e6 = expected.reshape(c, kh, kw, n, oh, ow)
    usual = []
    if kh == kw:
        usual.append((e6.transpose(0, 2, 1, 3, 4, 5),
                      "the kernel offsets are transposed: row (c, i, j) holds padded[c, n, y*sh + i, x*sw + j], "
                      "i (the kernel row) moving along H, j along W"))
    if oh == ow:
        usual.append((e6.transpose(0, 1, 2, 3, 5, 4),
                      "the output pixels are transposed: column (n, y, x) is the window at output row y, column x"))
    usual.append((e6[:, ::-1, ::-1],
                  "the kernel is flipped: deep learning's convolution is a cross-correlation, row (c, i, j) "
                  "reads padded[c, n, y*sh + i, x*sw + j], not y*sh + kh - 1 - i"))
    usual.append((e6.transpose(1, 2, 0, 3, 4, 5),
                  "the rows are ordered (i, j, c); the library's order is (c, i, j), channel first"))
    usual.append((e6.transpose(0, 1, 2, 4, 5, 3),
                  "the columns are ordered (y, x, n); the library's order is (n, y, x), image first"))
    if sh > 1 or sw > 1:
        usual.append((_windows(padded, kh, kw, 1, 1, oh, ow),
                      "the stride is missing: window (y, x) starts at row y*sh, column x*sw"))
    if sh != sw:
        usual.append((_windows(padded, kh, kw, sw, sh, oh, ow),
                      "the strides are swapped: sh steps down the rows (along H, with y and i), sw along the "
                      "columns (along W, with x and j): padded[c, n, y*sh + i, x*sw + j]"))
    for wrong, hint in usual:
        if wrong is not None and got.size == wrong.size and np.array_equal(got.reshape(wrong.shape), wrong):
            return hint
    return ("row (c, i, j), column (n, y, x) holds padded[c, n, y*sh + i, x*sw + j]; "
            "rows ordered c, then i, then j; columns n, then y, then x")


def check_im2col_loops(im2col_loops):
    """Check the learner's ``im2col_loops(padded, kh, kw, sh, sw, oh, ow)`` against ``im2col``.

    Eight geometries (3x3 with padding, stride 2, 1x1, non-square kernels, several images and
    channels, unequal strides), exact equality expected (im2col only copies). A failure names
    the geometry, the worst element (its row and column) and the usual mistake when recognised.
    """
    def run():
        for what, padded, geometry, expected in _cases():
            got = im2col_loops(padded.copy(), *geometry)
            if not isinstance(got, np.ndarray):
                raise returned(name_of(im2col_loops), got, f"the column matrix, an array of shape {expected.shape}")
            compare(f"im2col_loops({what})", got, expected, rtol=0, atol=0,
                    hint=_im2col_hint(got, padded, geometry, expected))
        return f"equals the library's im2col on all {len(CONFIGS)} geometries"

    return check("im2col_loops", run)


def _memory_span(a):
    """[first byte, one past the last byte] that the array ``a`` can read, from its strides
    alone (reading nothing: a wrong ``as_strided`` view may point outside its buffer)."""
    start = a.__array_interface__["data"][0]
    if a.size == 0:
        return start, start
    low = sum(min(0, s * (n - 1)) for s, n in zip(a.strides, a.shape))
    high = sum(max(0, s * (n - 1)) for s, n in zip(a.strides, a.shape))
    return start + low, start + high + a.itemsize


def check_window_view(window_view):
    """Check the learner's ``window_view(padded, kh, kw, sh, sw, oh, ow)``.

    It must return a (C, kh, kw, N, OH, OW) array that stays inside ``padded``'s memory (checked
    from its strides before any value is read: a wrong ``as_strided`` may point anywhere), shares
    that memory (a strided view, no copy), and reshapes to the library's ``im2col`` (C*kh*kw,
    N*OH*OW), on the same eight geometries as ``check_im2col_loops``.
    """
    def run():
        for what, padded, geometry, expected in _cases():
            kh, kw, sh, sw, oh, ow = geometry
            c, n = padded.shape[:2]
            padded = np.ascontiguousarray(padded)  # C-contiguous, as the notebook describes its strides
            view = window_view(padded, *geometry)
            shape6 = (c, kh, kw, n, oh, ow)
            if not isinstance(view, np.ndarray):
                raise returned(name_of(window_view), view, f"a view of padded, an array of shape {shape6}")
            if np.may_share_memory(view, padded):
                # a view: check its reach before reading any value (outside the buffer: garbage, or a crash)
                (lo, hi), (plo, phi) = _memory_span(view), _memory_span(padded)
                if lo < plo or hi > phi:
                    raise ExerciseFailed(
                        f"window_view({what}) reaches {max(plo - lo, hi - phi)} bytes outside padded's memory "
                        f"(shape {view.shape}, strides {view.strides}; padded has strides {padded.strides})\n"
                        "  hint: one step of i moves one row (s_h bytes), one step of y moves sh rows (s_h * sh); "
                        "likewise j and x with s_w; c and n keep s_c and s_n")
            compare(f"window_view({what})", view, expected.reshape(shape6), rtol=0, atol=0,
                    hint=_im2col_hint(view, padded, geometry, expected))
            if not np.may_share_memory(view, padded):
                raise ExerciseFailed(
                    f"window_view({what}) has the right values but is a copy, not a view of padded\n"
                    "  hint: build it with np.lib.stride_tricks.as_strided(padded, shape, strides) or "
                    "sliding_window_view, then slice or transpose (views too); no np.array, no reshape of a "
                    "non-contiguous result, no loops")
        return f"a strided view of the input, equal to the library's im2col on all {len(CONFIGS)} geometries"

    return check("window_view", run)
