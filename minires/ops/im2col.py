"""The three steps of a convolution as a matrix product (Chainer's ``utils/conv.py``).

For x (N, C, H, W) and a kh x kw kernel at stride (sh, sw) with padding (ph, pw)::

    padded  (C, N, Hp, Wp)              pad_channel_major: zero borders, channels first
    cols    (C*kh*kw, N*OH*OW)          im2col: a strided *view* of every window, then one copy
    out     (O, N*OH*OW) = W (O, C*kh*kw) @ cols          one matmul (in ``conv.py``)

and backward's way back, col2im, the adjoint of im2col. ``conv.py`` (the op) runs them on the
whole batch; ``minires/cpu_kernels/conv.py`` has their channels-last twins (one row per output
pixel), run on chunks of the batch, on threads.

Why channels first (C, N, H, W): the matmul naturally produces (O, N*OH*OW); keeping that memory
order means a conv's output needs no transpose copy (its NCHW view is a transpose), the next
conv's im2col reads whole contiguous rows, and dy's (O, N*OH*OW) matrix is a free reshape.
"""
from ..backend import get_array_module


def conv_output_size(size, kernel, stride, padding):
    """Output length along one axis: floor((size + 2*padding - kernel) / stride) + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def pad_channel_major(x, ph, pw):
    """x (N, C, H, W) -> zero-padded (C, N, H + 2*ph, W + 2*pw).

    Without padding this is just a transposed view (im2col reads any strides); with padding,
    a new C-contiguous array.
    """
    xp = get_array_module(x)
    xc = x.transpose(1, 0, 2, 3)
    if ph == 0 and pw == 0:
        return xc
    n, c, h, w = x.shape
    out = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = xc
    return out


def im2col(padded, kh, kw, sh, sw, oh, ow):
    """Channel-major padded input (C, N, Hp, Wp) -> columns (C*kh*kw, N*OH*OW).

    Row (c, i, j) holds, for every output pixel (n, y, x), the input value
    padded[c, n, y*sh + i, x*sw + j]: the windows are a strided view, copied once.
    """
    xp = get_array_module(padded)
    c, n = padded.shape[:2]
    s_c, s_n, s_h, s_w = padded.strides
    windows = xp.lib.stride_tricks.as_strided(
        padded, shape=(c, kh, kw, n, oh, ow), strides=(s_c, s_h, s_w, s_n, s_h * sh, s_w * sw)
    )
    return windows.reshape(c * kh * kw, n * oh * ow)


def col2im(cols, padded_shape, kh, kw, sh, sw, oh, ow):
    """Columns (C*kh*kw, N*OH*OW) -> summed back into a (C, N, Hp, Wp) buffer.

    The adjoint of im2col: each kernel offset (i, j) adds its slice with one strided
    slice-add, so overlapping windows accumulate (kh*kw vectorised adds, never np.add.at).
    """
    xp = get_array_module(cols)
    c, n = padded_shape[:2]
    cols = cols.reshape(c, kh, kw, n, oh, ow)
    out = xp.zeros(padded_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += cols[:, i, j]
    return out
