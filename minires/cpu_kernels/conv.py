"""im2col convolution on the CPU: the batch in chunks, each on a worker thread, channels-last.

The reference (``minires/ops/conv.py``) builds channel-major columns (C*kh*kw, N*OH*OW) and
computes W @ cols. This kernel builds the same matrix the other way round, one row per output
pixel, and takes the product in the orientation OpenBLAS runs fastest::

    forward, per chunk of n images:  cols = im2col(pad(x[chunk]))     (n*OH*OW, kh*kw*C), rows = pixels
                                     y[chunk] = cols @ W2^T            (n*OH*OW, O): channels-last memory
    backward, per chunk:             dW^T += cols^T @ dy2[chunk]       cols recomputed (not saved: see below)
                                     dx[chunk] = conv(dy, W flipped)   stride 1: one more im2col + matmul
                                                or col2im(dy2 @ W2)    other strides

The output is (N, OH, OW, O) memory behind an NCHW view ("channels-last", PyTorch's
``torch.channels_last``): users see ordinary NCHW tensors, and the next conv, batch norm, ReLU
and add read it as it is. What the orientation buys, measured at ResNet-20's 3x3 shapes
(batch 128, one thread; benchmarks/README.md, "Round five"): the (pixels x kh*kw*C) @ (kh*kw*C x O)
product runs 1.3-1.5x faster in OpenBLAS than (O x kh*kw*C) @ (kh*kw*C x pixels), whose short
side (O = 16-64 rows) its kernels handle poorly.

dx at stride 1 as a convolution: dx[c] = sum_o dy[o] (*) W[o, c] flipped, i.e. the forward of dy
with the kernel rotated by 180 degrees, input and output channels swapped, and padding
kh - 1 - ph. That trades col2im's kh*kw scattered adds of C-long runs (the slowest part of a
channels-last backward: 26 of 55 ms at 16 channels 32x32) for one im2col copy and the fast matmul.

Memory: backward needs the columns again. Saving them would keep kh*kw = 9 copies of every
conv's input alive until backward (about 0.8 GB for ResNet-20 at batch 128); recomputing them
from x, which the graph keeps anyway, costs one more im2col per chunk. We recompute.
"""
import numpy as np

from ..ops.im2col import conv_output_size
from ..threads import parallel_map
from .chunks import batch_chunks

# Size of one chunk's column matrix: 2 MB holds 3-4 images' columns of a 16-channel 32x32 3x3
# conv, and is the size of this Xeon's per-core L2, so the columns im2col writes are still there
# when the matmul reads them. Swept inside whole ResNet-20/56 steps (1-8 MB, 1 and 2 threads): 2 MB
# was best or within 2 % of best, and faster a step than the 8 MB that timing one conv alone had
# chosen: 1.14-1.28x in one session, 1.03-1.04x in another (shared machines: the cost of main memory
# varies). Alone, the conv's input and dy stay in cache, which they do not inside a step
# (benchmarks/size_sweep.py; benchmarks/README.md, "Round six").
CHUNK_BYTES = 2 * 2**20
# ...but no fewer pixel rows than this: OpenBLAS runs a product of few rows slowly. At 512
# channels, 7x7 px (ImageNet ResNets' last stage), 2 MB is one image, 49 rows: the conv took
# 1.2x its time with 8 MB chunks (9 images, 441 rows). CIFAR's convs get 960 rows or more at 2 MB
# at batch 128, so this floor leaves them as they are.
MIN_ROWS = 512


def pad_channels_last(x, ph, pw):
    """x (n, C, H, W), any memory layout -> zero-padded (n, H + 2*ph, W + 2*pw, C), C-contiguous."""
    n, c, h, w = x.shape
    out = np.empty((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    out[:, ph:ph + h, pw:pw + w] = x.transpose(0, 2, 3, 1)
    for border in (out[:, :ph], out[:, ph + h:], out[:, ph:ph + h, :pw], out[:, ph:ph + h, pw + w:]):
        border.fill(0)  # only the borders: zeroing the whole buffer first would write it twice
    return out


def im2col_channels_last(padded, kh, kw, sh, sw, oh, ow):
    """Padded (n, Hp, Wp, C) -> columns (n*OH*OW, kh*kw*C): row (n, y, x) holds the window
    padded[n, y*sh + i, x*sw + j, c] in (i, j, c) order, a strided view copied once."""
    n, _, _, c = padded.shape
    s_n, s_h, s_w, s_c = padded.strides
    windows = np.lib.stride_tricks.as_strided(
        padded, shape=(n, oh, ow, kh, kw, c), strides=(s_n, s_h * sh, s_w * sw, s_h, s_w, s_c))
    return windows.reshape(n * oh * ow, kh * kw * c)


def col2im_channels_last(cols, padded_shape, kh, kw, sh, sw, oh, ow):
    """The adjoint of ``im2col_channels_last``: columns summed back into a zero (n, Hp, Wp, C) buffer."""
    n, _, _, c = padded_shape
    cols = cols.reshape(n, oh, ow, kh, kw, c)
    out = np.zeros(padded_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, i:i + sh * oh:sh, j:j + sw * ow:sw] += cols[:, :, :, i, j]
    return out


def _rows_of(weight):
    """W (O, C, kh, kw) -> W2 (O, kh*kw*C), its columns in the (i, j, c) order of the columns'."""
    o = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(o, -1)


def _chunks(n, channels, kh, kw, oh, ow, itemsize):
    """The batch's image slices, each with about CHUNK_BYTES of columns of ``channels`` channels,
    and at least MIN_ROWS of them (output pixels) where the batch allows."""
    min_images = -(-MIN_ROWS // (oh * ow))
    return batch_chunks(n, kh * kw * channels * oh * ow * itemsize, CHUNK_BYTES, min_images)


def conv2d_forward(x, weight, bias, stride, padding):
    """y (N, O, OH, OW), a view of channels-last memory (N, OH, OW, O), chunk by chunk."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    w2_t = _rows_of(weight).T
    out = np.empty((n, oh, ow, o), dtype=x.dtype)

    def chunk_forward(images):
        cols = im2col_channels_last(pad_channels_last(x[images], ph, pw), kh, kw, sh, sw, oh, ow)
        np.matmul(cols, w2_t, out=out[images].reshape(-1, o))

    parallel_map(chunk_forward, _chunks(n, c, kh, kw, oh, ow, x.dtype.itemsize))
    if bias is not None:
        out += bias
    return out.transpose(0, 3, 1, 2)


def conv2d_backward(x, weight, gy, stride, padding, needs_input_grad):
    """(dx, dW, db), each None where ``needs_input_grad`` says no, chunk by chunk; dx channels-last."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    oh, ow = gy.shape[2:]
    need_x, need_w, need_b = needs_input_grad
    gy_last = gy.transpose(0, 2, 3, 1)  # (N, OH, OW, O): a view of channels-last dy, else read strided
    # dx as the forward of dy (see the module docstring) where that conv exists: stride 1, and
    # padding that leaves a kernel's worth of border at most
    as_conv = (sh, sw) == (1, 1) and ph <= kh - 1 and pw <= kw - 1
    if need_x and as_conv:  # the flipped kernel's rows, (kh*kw*O, C): dx = gcols @ flipped
        flipped = _rows_of(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)).T
    elif need_x:  # W2 (O, kh*kw*C): dcols = dy2 @ W2, then col2im
        w2 = _rows_of(weight)
    gx = np.empty((n, h, w, c), dtype=x.dtype) if need_x else None

    def chunk_backward(images):  # returns this chunk's share of dW2^T (kh*kw*C, O)
        g = gy_last[images].reshape(-1, o)
        gw = None
        if need_w:
            cols = im2col_channels_last(pad_channels_last(x[images], ph, pw), kh, kw, sh, sw, oh, ow)
            gw = cols.T @ g  # dW2^T: 1.03-1.18x faster than dW2 = g^T @ cols (16-64 channels, 1 thread)
        if need_x and as_conv:
            gpad = pad_channels_last(gy[images], kh - 1 - ph, kw - 1 - pw)
            np.matmul(im2col_channels_last(gpad, kh, kw, 1, 1, h, w), flipped, out=gx[images].reshape(-1, c))
        elif need_x:
            nb = images.stop - images.start
            gpad = col2im_channels_last(g @ w2, (nb, h + 2 * ph, w + 2 * pw, c), kh, kw, sh, sw, oh, ow)
            gx[images] = gpad[:, ph:ph + h, pw:pw + w]
        return gw

    # chunks sized by the larger column matrix: x's (C channels at OH x OW), or dy's (O at H x W)
    shares = parallel_map(chunk_backward, _chunks(n, max(c, o), kh, kw, max(oh, h), max(ow, w), x.dtype.itemsize))
    gw = None
    if need_w:
        gw = np.ascontiguousarray(sum(shares[1:], shares[0]).reshape(kh, kw, c, o).transpose(3, 2, 0, 1))
    gb = gy_last.sum(axis=(0, 1, 2)) if need_b else None
    return None if gx is None else gx.transpose(0, 3, 1, 2), gw, gb
