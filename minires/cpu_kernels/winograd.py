"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2016).

A second algorithm for the convs that make up most of a CIFAR ResNet, on NumPy data;
``minires/ops/conv.py`` (im2col) stays the reference, and ``cpu_kernels/conv.py`` handles every
other shape (``ops.conv.choose_algorithm`` picks). Cut the zero-padded input into 4x4 tiles
``d`` overlapping by 2 (tile (ty, tx) starts at row 2*ty, column 2*tx); each gives a 2x2 block
of the output::

    Y = A^T [ sum_c (G g G^T) * (B^T d B) ] A          (* is elementwise, over 4x4)

        B^T = [[1, 0, -1,  0],     G = [[1,    0,   0],     A^T = [[1, 1,  1,  0],
               [0, 1,  1,  0],          [1/2, 1/2, 1/2],           [0, 1, -1, -1]]
               [0, -1, 1,  0],          [1/2, -1/2, 1/2],
               [0, 1,  0, -1]]          [0,    0,   1]]

Each of the 16 positions (xi, nu) of the 4x4 products is an ordinary matrix product over
channels, so one batched matmul does all of them::

    U  (16, O, C)   = G g G^T            weight transform, once per call (tiny)
    V  (16, C, T)   = B^T d B            input transform, T = tiles in the chunk
    M  (16, O, T)   = U @ V              16 matmuls in one call
    y               = A^T M A            output transform, written into the output's 2x2 blocks

2.25x fewer multiplies than im2col (16 products per 4 outputs instead of 9 per output), and
V is 4x the input where im2col's columns are 9x. B and A hold only 0 and +-1, so their
transforms are additions of whole slices of the chunk (never a matmul with a 4x4 matrix),
laid out so that each slice is contiguous (``TileGrid``).

Backward is the adjoint of every step, in reverse, with the same two batched matmuls::

    dM  = A dY A^T                       (additions)
    dU  = sum over tiles dM @ V^T        -> dW = G^T dU G  (tiny)
    dV  = U^T @ dM                       -> dx = B dV B^T added back into the overlapping tiles
                                            (the adjoint of cutting tiles, like col2im), cropped

so the gradients are exactly those of the forward computation, and nothing but x is saved
(V is recomputed per chunk, as im2col recomputes its columns).
"""
import numpy as np

from ..backend import get_array_module
from ..threads import parallel_map
from .chunks import batch_chunks

# The transforms as matrices: only the weight transform uses G as a matrix (it is tiny); the tests
# use all three to check the additions below against the textbook formula.
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)

# Bytes of V (16 planes of transformed tiles) per chunk of the batch. Smaller than im2col's
# chunks: the transforms make several passes over V, cheap only while it stays in cache.
# Measured, forward + backward at 16->16 @32 px, 1 thread: 0.5 / 1 / 2 / 4 / 8 MB took
# 30.6 / 25.4 / 24.8 / 26.6 / 102 ms (2 MB best or within noise at 1 and 2 threads on all shapes).
CHUNK_BYTES = 2 * 2**20


def winograd_applies(weight_shape, stride):
    """True for the convs this file handles: 3x3 kernels at stride 1 (any padding)."""
    return tuple(weight_shape[2:]) == (3, 3) and tuple(stride) == (1, 1)


# ----------------------------------------------------------------------------- the four transforms

def _apply_b_t(d, out):
    """out[a] = sum_k B^T[a, k] d[k] for a list of 4 equally shaped views: four adds, no products."""
    xp = get_array_module(out[0])
    xp.subtract(d[0], d[2], out=out[0])
    xp.add(d[1], d[2], out=out[1])
    xp.subtract(d[2], d[1], out=out[2])
    xp.subtract(d[1], d[3], out=out[3])


def _add_b(dt, d):
    """d[k] += sum_a B^T[a, k] dt[a]: the adjoint of ``_apply_b_t``, accumulated, because the
    views d[k] of neighbouring tiles overlap (as col2im accumulates overlapping windows)."""
    d[0] += dt[0]
    d[2] -= dt[0]
    d[1] += dt[1]
    d[2] += dt[1]
    d[1] -= dt[2]
    d[2] += dt[2]
    d[1] += dt[3]
    d[3] -= dt[3]


def _apply_a_t(m, out0, out1):
    """(out0, out1) = A^T (m[0], m[1], m[2], m[3]):  out0 = m0 + m1 + m2,  out1 = m1 - m2 - m3."""
    xp = get_array_module(out0)
    xp.add(m[0], m[1], out=out0)
    out0 += m[2]
    xp.subtract(m[1], m[2], out=out1)
    out1 -= m[3]


def _apply_a(d0, d1, out):
    """out = A (d0, d1), the adjoint of ``_apply_a_t``:  (d0, d0 + d1, d0 - d1, -d1)."""
    xp = get_array_module(out)
    out[0] = d0
    xp.add(d0, d1, out=out[1])
    xp.subtract(d0, d1, out=out[2])
    xp.negative(d1, out=out[3])


class TileGrid:
    """Where the tiles of one chunk (C, n images, output OH x OW) live in memory.

    The zero-padded input P is kept as its four *parity planes* q[rp, cp] = P[:, :, rp::2, cp::2],
    each (C, n, th + 1, tw + 1) with th = ceil(OH / 2), tw = ceil(OW / 2), stored flat one after
    the other. Element (k, l) of tile (ty, tx) is P[2ty + k, 2tx + l] = q[k % 2, l % 2] at row
    ty + k // 2, column tx + l // 2, i.e. at the flat position of (ty, tx) plus the constant
    ``shift(k, l)``. So each of the 16 tile elements, for all tiles of the chunk at once, is one
    *contiguous* slice of a flat plane, and every transform is a handful of long contiguous
    adds (fast SIMD loops), where strided views over tiles gave short strided loops: the input
    transform of the 16->16 @32 px conv (batch 128, 1 thread) took 10 ms with strided views,
    3 ms on the flat planes, and Winograd went from 0.35-0.6x im2col's speed to 1.3-2x.

    The price: tiles are indexed on the (th + 1) x (tw + 1) grid, whose last row and column
    are junk tiles (they wrap into the next row, image or channel). They are computed and
    discarded, and get zero gradient: (th + 1)(tw + 1) / (th * tw) times the tiles in the
    matmul (1.13x at 32 px, 1.27x at 16 px, 1.56x at 8 px).
    """

    def __init__(self, c, n, oh, ow):
        self.c, self.n, self.oh, self.ow = c, n, oh, ow
        self.th, self.tw = -(-oh // 2), -(-ow // 2)
        self.plane = (c, n, self.th + 1, self.tw + 1)
        self.tiles = n * (self.th + 1) * (self.tw + 1)  # tiles per channel, junk included
        self.size = c * self.tiles  # one flat plane, or one of V's 16 planes

    def shift(self, k, l):
        """Flat offset of tile element (k, l) from the tile's own position."""
        return (k // 2) * (self.tw + 1) + l // 2

    def zero_planes(self, xp, dtype):
        """Zeroed flat storage for the four parity planes, with room for the largest shift."""
        return xp.zeros((2, 2, self.size + self.tw + 2), dtype=dtype)


def _parity_slices(parity, pad, size):
    """For the padded rows 2r + parity: (rows r of the parity plane, rows of x) they hold, where x
    row = padded row - pad (the same for columns)."""
    start = (parity - pad) % 2
    count = len(range(start, size, 2))
    first = (start + pad - parity) // 2
    return slice(first, first + count), slice(start, size, 2)


def to_parity_planes(x, grid, ph, pw):
    """x (n, C, H, W) -> the zero-padded input's four parity planes (see ``TileGrid``): four strided copies."""
    xp = get_array_module(x)
    q = grid.zero_planes(xp, x.dtype)
    xc = x.transpose(1, 0, 2, 3)
    for rp in range(2):
        rows, xrows = _parity_slices(rp, ph, x.shape[2])
        for cp in range(2):
            cols, xcols = _parity_slices(cp, pw, x.shape[3])
            q[rp, cp, :grid.size].reshape(grid.plane)[:, :, rows, cols] = xc[:, :, xrows, xcols]
    return q


def from_parity_planes(dq, grid, ph, pw, gx):
    """The adjoint of ``to_parity_planes``: gx (C, n, H, W) = the x positions of dq (padding dropped)."""
    for rp in range(2):
        rows, xrows = _parity_slices(rp, ph, gx.shape[2])
        for cp in range(2):
            cols, xcols = _parity_slices(cp, pw, gx.shape[3])
            gx[:, :, xrows, xcols] = dq[rp, cp, :grid.size].reshape(grid.plane)[:, :, rows, cols]


def input_transform(q, grid):
    """Parity planes -> V (16, C, tiles): B^T d B for every 4x4 tile d.

    Rows first: t[a, cp] = sum_k B^T[a, k] (tile row k), four long adds for both column parities;
    then the same along columns, written straight into V's 16 planes, all four rows a at once.
    (Stacked views: one call per output row instead of one per parity or per row, a third of
    the NumPy calls, each of which holds the GIL; with two threads that bought 5-12 % per conv.)
    """
    xp = get_array_module(q)
    n_t = grid.size + 1  # t is read with column shifts 0 and 1
    t = xp.empty((4, 2, n_t), dtype=q.dtype)
    _apply_b_t([q[k % 2, :, grid.shift(k, 0):grid.shift(k, 0) + n_t] for k in range(4)], t)  # both parities at once
    v = xp.empty((4, 4, grid.size), dtype=q.dtype)
    _apply_b_t([t[:, l % 2, l // 2:l // 2 + grid.size] for l in range(4)], v.transpose(1, 0, 2))  # all 4 rows a at once
    return v.reshape(16, grid.c, grid.tiles)


def input_transform_adjoint(dv, grid):
    """dV (16, C, tiles) -> parity planes of d padded = sum over tiles of B dV B^T, added back
    at each tile's place (columns first, then rows: the reverse of ``input_transform``)."""
    xp = get_array_module(dv)
    n_t = grid.size + 1
    dv = dv.reshape(4, 4, grid.size)
    dt = xp.zeros((4, 2, n_t), dtype=dv.dtype)
    _add_b(dv.transpose(1, 0, 2), [dt[:, l % 2, l // 2:l // 2 + grid.size] for l in range(4)])
    dq = grid.zero_planes(xp, dv.dtype)
    _add_b(dt, [dq[k % 2, :, grid.shift(k, 0):grid.shift(k, 0) + n_t] for k in range(4)])
    return dq


def output_transform(m, grid, y):
    """M (16, O, tiles) -> y (O, n, OH, OW), written in place: A^T m A for every tile, whose
    2x2 block (i, j) lands in the strided view y[:, :, i::2, j::2] (junk tiles and, when OH or
    OW is odd, the last half tiles dropped)."""
    xp = get_array_module(m)
    o = m.shape[1]
    m = m.reshape(4, 4, o * grid.tiles)
    z = xp.empty((2, 4, o * grid.tiles), dtype=m.dtype)  # A^T along rows, long flat adds
    _apply_a_t(m, z[0], z[1])
    block = xp.empty((2, 2, o * grid.tiles), dtype=m.dtype)  # then along columns, both rows i at once
    _apply_a_t(z.transpose(1, 0, 2), block[:, 0], block[:, 1])
    for i in range(2):
        for j in range(2):
            dst = y[:, :, i::2, j::2]
            dst[...] = block[i, j].reshape((o,) + grid.plane[1:])[:, :, :dst.shape[2], :dst.shape[3]]


def output_transform_adjoint(dy, grid):
    """dy (O, n, OH, OW) -> dM (16, O, tiles) = A dY A^T for every tile's 2x2 block of dy
    (zero for junk tiles and missing half tiles)."""
    xp = get_array_module(dy)
    o = dy.shape[0]
    e = xp.zeros((2, 2, o) + grid.plane[1:], dtype=dy.dtype)
    for i in range(2):
        for j in range(2):
            src = dy[:, :, i::2, j::2]
            e[i, j, :, :, :src.shape[2], :src.shape[3]] = src
    e = e.reshape(2, 2, o * grid.tiles)
    z = xp.empty((4, 2, o * grid.tiles), dtype=dy.dtype)  # A along rows, both columns j at once
    _apply_a(e[0], e[1], z)
    dm = xp.empty((4, 4, o * grid.tiles), dtype=dy.dtype)  # then along columns, all 4 rows a at once
    _apply_a(z[:, 0], z[:, 1], dm.transpose(1, 0, 2))
    return dm.reshape(16, o, grid.tiles)


def weight_transform(weight):
    """weight (O, C, 3, 3) -> U (16, O, C) = G g G^T for every (o, c)."""
    xp = get_array_module(weight)
    g = xp.asarray(G, dtype=weight.dtype)
    o, c = weight.shape[:2]
    # optimize=True: einsum as two BLAS products; its one naive loop took 0.57 ms at 64 channels (0.18 now)
    return xp.einsum("ai,ocij,bj->aboc", g, weight, g, optimize=True).reshape(16, o, c)


def weight_transform_adjoint(du):
    """dU (16, O, C) -> dW (O, C, 3, 3) = G^T dU G."""
    xp = get_array_module(du)
    g = xp.asarray(G, dtype=du.dtype)
    o, c = du.shape[1:]
    # optimize=True as above: 1.64 ms -> 0.11 ms at 64 channels, on one thread while the pool waits
    return xp.einsum("ai,aboc,bj->ocij", g, du.reshape(4, 4, o, c), g, optimize=True)


# ----------------------------------------------------------------------------- the kernels

def _chunks(x, c, oh, ow):
    """The batch's chunks (image slices) with about CHUNK_BYTES of V each."""
    tiles_per_image = ((oh + 1) // 2 + 1) * ((ow + 1) // 2 + 1)
    return batch_chunks(x.shape[0], 16 * c * tiles_per_image * x.dtype.itemsize, CHUNK_BYTES)


def winograd_forward(x, weight, bias, padding):
    """(y, U): the conv's output (N, O, OH, OW), a view of channel-major memory as im2col's, and
    the transformed weight U, which backward needs again.

    Forward: V = B^T d B, M = U @ V, y = A^T M A, chunk by chunk on the worker threads.
    """
    n, c, h, w = x.shape
    o = weight.shape[0]
    ph, pw = padding
    oh, ow = h + 2 * ph - 2, w + 2 * pw - 2
    u = weight_transform(weight)
    out = np.empty((o, n, oh, ow), dtype=x.dtype)  # channel-major, as im2col's output

    def chunk_forward(images):
        grid = TileGrid(c, images.stop - images.start, oh, ow)
        v = input_transform(to_parity_planes(x[images], grid, ph, pw), grid)
        output_transform(np.matmul(u, v), grid, out[:, images])

    parallel_map(chunk_forward, _chunks(x, c, oh, ow))
    if bias is not None:
        out += bias[:, None, None, None]
    return out.transpose(1, 0, 2, 3), u


def winograd_backward(x, u, gy, padding, needs_input_grad):
    """(dx, dW, db), each None where ``needs_input_grad`` says no: dM = A dY A^T,
    dW = G^T (dM @ V^T) G, dx = B (U^T @ dM) B^T added back into the tiles and cropped, db = sum dy."""
    ph, pw = padding
    n, c, h, w = x.shape
    gy_c = gy.transpose(1, 0, 2, 3)  # (O, N, OH, OW): a view, contiguous when gy is channel-major
    oh, ow = gy_c.shape[2:]
    need_x, need_w, need_b = needs_input_grad
    gx = np.empty((c, n, h, w), dtype=x.dtype) if need_x else None
    u_t = u.transpose(0, 2, 1)

    def chunk_backward(images):  # returns this chunk's share of dU^T (16, C, O)
        grid = TileGrid(c, images.stop - images.start, oh, ow)
        dm = output_transform_adjoint(gy_c[:, images], grid)
        du_t = None
        if need_w:
            v = input_transform(to_parity_planes(x[images], grid, ph, pw), grid)
            du_t = v @ dm.transpose(0, 2, 1)  # dU^T = V @ dM^T, transposed as in conv.py's dW
        if need_x:
            from_parity_planes(input_transform_adjoint(u_t @ dm, grid), grid, ph, pw, gx[:, images])
        return du_t

    shares = parallel_map(chunk_backward, _chunks(x, c, oh, ow))
    gw = weight_transform_adjoint(sum(shares[1:], shares[0]).transpose(0, 2, 1)) if need_w else None
    gb = gy_c.sum(axis=(1, 2, 3)) if need_b else None
    return None if gx is None else gx.transpose(1, 0, 2, 3), gw, gb
