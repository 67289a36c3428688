"""im2col convolution on the CPU: the batch in chunks, each on a worker thread, channel-major.

The same three steps as ``minires/ops/conv.py`` (the reference), chunk by chunk (``chunks.py``
says what chunks and threads buy)::

    forward, per chunk of n images:    cols = im2col(pad(x[chunk]))    out[:, chunk] = W @ cols
    backward, per chunk:               cols recomputed (not saved: see below)
                                       dW^T += cols @ dy2[:, chunk]^T    dx[chunk] = col2im(W^T @ dy2[:, chunk])

The output is (O, N*OH*OW) memory behind an NCHW view, as the reference's.

Memory: backward needs the columns again. Saving them would keep kh*kw = 9 copies of every
conv's input alive until backward (about 0.8 GB for ResNet-20 at batch 128, eight times its
conv inputs); recomputing them from x, which the graph keeps anyway, costs one more im2col
per chunk, 13-20% of a conv's forward + backward time on ResNet-20's shapes. We recompute.
"""
import numpy as np

from ..ops.im2col import col2im, conv_output_size, im2col, pad_channel_major
from ..threads import parallel_map
from .chunks import batch_chunks

# Size of one chunk's column matrix: 8 MB is 14 images of a 16-channel 32x32 3x3 conv. Measured
# best among 1..16 MB on ResNet-20's shapes at 1 and 2 threads; 16 MB and the whole batch were
# 10-40% slower (benchmarks/README.md).
CHUNK_BYTES = 8 * 2**20


def _chunks(x, rows, oh, ow):
    """The batch's chunks: (image slice, matching column slice of an (O, N*OH*OW) matrix)."""
    per_image = oh * ow
    return [(s, slice(s.start * per_image, s.stop * per_image))
            for s in batch_chunks(x.shape[0], rows * per_image * x.dtype.itemsize, CHUNK_BYTES)]


def conv2d_forward(x, weight, bias, stride, padding):
    """y (N, O, OH, OW), a view of channel-major memory: the reference's result, chunk by chunk."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
    w2 = weight.reshape(o, -1)
    out = np.empty((o, n * oh * ow), dtype=x.dtype)

    def chunk_forward(chunk):
        images, columns = chunk
        cols = im2col(pad_channel_major(x[images], ph, pw), kh, kw, sh, sw, oh, ow)
        np.matmul(w2, cols, out=out[:, columns])

    parallel_map(chunk_forward, _chunks(x, c * kh * kw, oh, ow))
    if bias is not None:
        out += bias[:, None]
    return out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)


def conv2d_backward(x, weight, gy, stride, padding, needs_input_grad):
    """(dx, dW, db), each None where ``needs_input_grad`` says no, chunk by chunk."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = stride, padding
    oh, ow = gy.shape[2:]
    w2 = weight.reshape(o, -1)
    gy2 = gy.transpose(1, 0, 2, 3).reshape(o, -1)  # a view when gy is channel-major, else one copy
    need_x, need_w, need_b = needs_input_grad
    gx = np.empty((c, n, h, w), dtype=x.dtype) if need_x else None  # channel-major, like x

    def chunk_backward(chunk):  # returns this chunk's share of dW^T (C*kh*kw, O)
        images, columns = chunk
        g = gy2[:, columns]
        gw_t = None
        if need_w:
            cols = im2col(pad_channel_major(x[images], ph, pw), kh, kw, sh, sw, oh, ow)
            gw_t = cols @ g.T  # dW^T = cols @ dy2^T: OpenBLAS runs it 1.2-1.6x faster than dy2 @ cols^T
        if need_x:
            nb = images.stop - images.start
            gpad = col2im(w2.T @ g, (c, nb, h + 2 * ph, w + 2 * pw), kh, kw, sh, sw, oh, ow)
            gx[:, images] = gpad[:, :, ph:ph + h, pw:pw + w]
        return gw_t

    shares = parallel_map(chunk_backward, _chunks(x, c * kh * kw, oh, ow))
    gw = sum(shares[1:], shares[0]).T.reshape(weight.shape) if need_w else None
    gb = gy2.sum(axis=1) if need_b else None
    return None if gx is None else gx.transpose(1, 0, 2, 3), gw, gb
