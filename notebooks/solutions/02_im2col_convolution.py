# Reference solutions for the exercises of notebooks/02_im2col_convolution.ipynb.
# Each block below replaces the exercise cell of the same name (tests/notebook_tools.py);
# it runs after the notebook's earlier cells, so it uses their imports (np, ...).
# Try the exercise first: the check cell under it tells you what is wrong, and where.

# %% exercise: im2col_loops
def im2col_loops(padded, kh, kw, sh, sw, oh, ow):
    """(C, N, Hp, Wp) -> (C*kh*kw, N*oh*ow): row (c, i, j), column (n, y, x) holds padded[c, n, y*sh + i, x*sw + j]."""
    c, n = padded.shape[:2]
    cols = np.empty((c * kh * kw, n * oh * ow), dtype=padded.dtype)
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                row = (ci * kh + i) * kw + j
                for ni in range(n):
                    for y in range(oh):
                        for x in range(ow):
                            cols[row, (ni * oh + y) * ow + x] = padded[ci, ni, y * sh + i, x * sw + j]
    return cols

# %% exercise: window_view
def window_view(padded, kh, kw, sh, sw, oh, ow):
    """(C, N, Hp, Wp) -> a (C, kh, kw, N, oh, ow) view: [c, i, j, n, y, x] = padded[c, n, y*sh + i, x*sw + j]."""
    s_c, s_n, s_h, s_w = padded.strides  # bytes to step one channel, image, row, column
    # One step along i moves one row down (s_h), along y sh rows down (s_h * sh); likewise j, x.
    return np.lib.stride_tricks.as_strided(
        padded, shape=(padded.shape[0], kh, kw, padded.shape[1], oh, ow),
        strides=(s_c, s_h, s_w, s_n, s_h * sh, s_w * sw), writeable=False)
