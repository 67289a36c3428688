"""3x3 stride-1 convolution by Winograd's minimal filtering F(m x m, 3x3) (Lavin & Gray 2016), m = 2 or 4.

A second (and third) algorithm for the convs that make up most of a CIFAR ResNet, on NumPy
data; ``minires/ops/conv.py`` (im2col) stays the reference, and ``cpu_kernels/conv.py`` handles
every other shape (the autotuner, ``minires/autotune/``, or a fixed rule picks). Cut the
zero-padded input into a x a tiles ``d`` (a = m + 2) overlapping by 2 (tile (ty, tx) starts at
row m*ty, column m*tx); each gives an m x m block of the output::

    Y = A^T [ sum_c (G g G^T) * (B^T d B) ] A          (* is elementwise, over a x a)

F(2x2, 3x3), "winograd" (a = 4: 16 products per 4 outputs, 2.25x fewer than im2col's 9 per output)::

    B^T = [[1, 0, -1,  0],     G = [[1,    0,   0],     A^T = [[1, 1,  1,  0],
           [0, 1,  1,  0],          [1/2, 1/2, 1/2],           [0, 1, -1, -1]]
           [0, -1, 1,  0],          [1/2, -1/2, 1/2],
           [0, 1,  0, -1]]          [0,    0,   1]]

F(4x4, 3x3), "winograd4" (a = 6: 36 products per 16 outputs, 4x fewer than im2col), with the
interpolation points 0, +-1, +-2 and infinity (Lavin & Gray's Table 2)::

    B^T = [[4,  0, -5,  0, 1, 0],   G = [[ 1/4,     0,    0],   A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],        [-1/6,  -1/6, -1/6],          [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],        [-1/6,   1/6, -1/6],          [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],        [1/24,  1/12,  1/6],          [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],        [1/24, -1/12,  1/6],
           [0,  4,  0, -5, 0, 1]]        [   0,     0,    1]]

The price of the larger tile is float32 rounding: its transforms multiply by up to 8 and 5, so
its error grows (measured in benchmarks/README.md, "Round four": a few times im2col's at a
ResNet's shapes; ``tests/test_ops_winograd.py`` bounds it).

Each of the a*a positions of the products is an ordinary matrix product over channels, so one
batched matmul does all of them::

    U  (a*a, O, C)  = G g G^T            weight transform, once per call (tiny)
    V  (a*a, C, T)  = B^T d B            input transform, T = tiles in the chunk
    M  (a*a, O, T)  = U @ V              a*a matmuls in one call
    y               = A^T M A            output transform, written into the output's m x m blocks

B and A are small integer matrices, so their transforms are sums of whole slices of the chunk
times constants (``_combine``: an add or subtract for each +-1, never a matmul with a small
matrix), laid out so that each slice is contiguous (``TileGrid``).

Backward is the adjoint of every step, in reverse, with the same two batched matmuls::

    dM  = A dY A^T                       (sums of slices)
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


class Transforms:
    """The three matrices of F(m x m, 3x3); tiles are a x a with a = m + 2."""

    def __init__(self, m, b_t, g, a_t):
        self.m, self.a = m, m + 2
        self.B_T, self.G, self.A_T = (np.array(t, dtype=np.float64) for t in (b_t, g, a_t))
        # The sums the transforms compute, worked out once (``_combine``, ``_combine_adjoint``)
        self.b_t_sums, self.a_t_sums, self.a_sums = _sums(self.B_T), _sums(self.A_T), _sums(self.A_T.T)
        self.b_t_rows = _rows(self.B_T)


def _rows(matrix):
    """Each row's non-zero terms ((k, c), ...), with c a Python float: a NumPy float64 scalar
    would run the float32 products in float64 (it made the Winograd backward 12 % slower)."""
    return tuple(tuple((k, float(c)) for k, c in enumerate(row) if c != 0) for row in matrix)


def _sums(matrix):
    """How ``_combine`` computes out_i = sum_k matrix[i, k] x_k: per row (first, rest), where
    ``first`` starts the sum in one pass and ``rest`` lists the terms (k, c) added after it.

    first = (ufunc, k0, k1): x_k0 + x_k1 or x_k0 - x_k1, for a row with a +1 term and another +-1
    (no product); else (None, k0, c0): c0 * x_k0. F(2x2)'s B^T is then four adds and subtracts,
    as if written by hand. Decided here, once: the transforms run per chunk, and Python work
    between their long NumPy calls costs more than its size (the calls evict the interpreter's
    data from the caches; deciding each row per call made F(2x2)'s input transform 15 % slower).
    """
    sums = []
    for terms in _rows(matrix):
        terms = sorted(terms, key=lambda t: t[1] != 1)  # a +1 term first, if there is one
        (k0, c0), rest = terms[0], tuple(terms[1:])
        if c0 == 1 and rest and abs(rest[0][1]) == 1:
            (k1, c1), rest = rest[0], rest[1:]
            sums.append(((np.add if c1 == 1 else np.subtract, k0, k1), rest))
        else:
            sums.append(((None, k0, c0), rest))
    return tuple(sums)


F2 = Transforms(2, b_t=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
                g=[[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
                a_t=[[1, 1, 1, 0], [0, 1, -1, -1]])
F4 = Transforms(4, b_t=[[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                g=[[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
                a_t=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])
TRANSFORMS = {"winograd": F2, "winograd4": F4}  # the algorithm names of conv2d(..., algorithm=...)

# Bytes of V (the transformed tiles) per chunk of the batch, as im2col's columns: the transforms
# make several passes over V, cheap only while it stays in cache. Measured for F(2x2),
# forward + backward at 16->16 @32 px, 1 thread: 0.5 / 1 / 2 / 4 / 8 MB took
# 30.6 / 25.4 / 24.8 / 26.6 / 102 ms (2 MB best or within noise at 1 and 2 threads on all shapes).
CHUNK_BYTES = 2 * 2**20


def winograd_applies(weight_shape, stride):
    """True for the convs this file handles: 3x3 kernels at stride 1 (any padding)."""
    return tuple(weight_shape[2:]) == (3, 3) and tuple(stride) == (1, 1)


# ----------------------------------------------------------------------------- the transforms

def _combine(sums, inputs, outputs):
    """outputs[i] = sum_k M[i, k] * inputs[k] for lists of equally shaped views, M as ``_sums(M)``:
    one pass over memory per term, none spent on multiplying by +-1."""
    scratch = []  # one buffer for every c * x of this call (F(4x4) only), not a new array per term
    for out, ((op, k0, b), rest) in zip(outputs, sums):
        if op is None:
            np.multiply(inputs[k0], b, out=out)
        else:
            op(inputs[k0], inputs[b], out=out)
        for k, c in rest:
            _add_scaled(out, c, inputs[k], scratch)


def _combine_adjoint(rows, inputs, outputs):
    """outputs[k] += sum_i c * inputs[i] over the terms (k, c) of rows[i]: the adjoint of
    ``_combine``, accumulated, because the views outputs[k] of neighbouring tiles overlap (as
    col2im accumulates windows)."""
    scratch = []
    for x, terms in zip(inputs, rows):
        for k, c in terms:
            _add_scaled(outputs[k], c, x, scratch)


def _add_scaled(out, c, x, scratch):
    """out += c * x, without a product for c = +-1; ``scratch`` ([] or [buffer]) holds c * x."""
    if c == 1:
        out += x
    elif c == -1:
        out -= x
    else:
        if not scratch:
            scratch.append(np.empty(x.shape, dtype=x.dtype))
        np.multiply(x, c, out=scratch[0])
        out += scratch[0]


class TileGrid:
    """Where the tiles of one chunk (C, n images, output OH x OW) live in memory, for F(m x m, 3x3).

    The zero-padded input P is kept as its m*m *phase planes* q[rp, cp] = P[:, :, rp::m, cp::m],
    each (C, n, th + 1, tw + 1) with th = ceil(OH / m), tw = ceil(OW / m), stored flat one after
    the other. Element (k, l) of tile (ty, tx) is P[m*ty + k, m*tx + l] = q[k % m, l % m] at row
    ty + k // m, column tx + l // m, i.e. at the flat position of (ty, tx) plus the constant
    ``shift(k, l)``. So each of the a*a tile elements, for all tiles of the chunk at once, is one
    *contiguous* slice of a flat plane, and every transform is a handful of long contiguous
    adds (fast SIMD loops), where strided views over tiles gave short strided loops: the input
    transform of the 16->16 @32 px conv (F(2x2), batch 128, 1 thread) took 10 ms with strided
    views, 3 ms on the flat planes, and Winograd went from 0.35-0.6x im2col's speed to 1.3-2x.

    The price: tiles are indexed on the (th + 1) x (tw + 1) grid, whose last row and column
    are junk tiles (they wrap into the next row, image or channel). They are computed and
    discarded, and get zero gradient: (th + 1)(tw + 1) / (th * tw) times the tiles in the
    matmul (F(2x2): 1.13x at 32 px, 1.27x at 16 px, 1.56x at 8 px; F(4x4): 1.27x, 1.56x, 2.25x).
    """

    def __init__(self, c, n, oh, ow, m=2):
        self.c, self.n, self.oh, self.ow, self.m = c, n, oh, ow, m
        self.th, self.tw = -(-oh // m), -(-ow // m)
        self.plane = (c, n, self.th + 1, self.tw + 1)
        self.tiles = n * (self.th + 1) * (self.tw + 1)  # tiles per channel, junk included
        self.size = c * self.tiles  # one flat plane, or one of V's a*a planes

    def shift(self, k, l):
        """Flat offset of tile element (k, l) from the tile's own position."""
        return (k // self.m) * (self.tw + 1) + l // self.m

    def zero_planes(self, xp, dtype):
        """Zeroed flat storage for the m*m phase planes, with room for the largest shift."""
        return xp.zeros((self.m, self.m, self.size + self.tw + 2), dtype=dtype)


def _phase_slices(phase, pad, size, m):
    """For the padded rows m*r + phase: (rows r of the phase plane, rows of x) they hold, where x
    row = padded row - pad (the same for columns)."""
    start = (phase - pad) % m
    count = len(range(start, size, m))
    first = (start + pad - phase) // m
    return slice(first, first + count), slice(start, size, m)


def to_phase_planes(x, grid, ph, pw):
    """x (n, C, H, W) -> the zero-padded input's m*m phase planes (see ``TileGrid``): strided copies."""
    xp = get_array_module(x)
    q = grid.zero_planes(xp, x.dtype)
    xc = x.transpose(1, 0, 2, 3)
    for rp in range(grid.m):
        rows, xrows = _phase_slices(rp, ph, x.shape[2], grid.m)
        for cp in range(grid.m):
            cols, xcols = _phase_slices(cp, pw, x.shape[3], grid.m)
            q[rp, cp, :grid.size].reshape(grid.plane)[:, :, rows, cols] = xc[:, :, xrows, xcols]
    return q


def from_phase_planes(dq, grid, ph, pw, gx):
    """The adjoint of ``to_phase_planes``: gx (C, n, H, W) = the x positions of dq (padding dropped)."""
    for rp in range(grid.m):
        rows, xrows = _phase_slices(rp, ph, gx.shape[2], grid.m)
        for cp in range(grid.m):
            cols, xcols = _phase_slices(cp, pw, gx.shape[3], grid.m)
            gx[:, :, xrows, xcols] = dq[rp, cp, :grid.size].reshape(grid.plane)[:, :, rows, cols]


def input_transform(q, grid, tf):
    """Phase planes -> V (a*a, C, tiles): B^T d B for every a x a tile d.

    Rows first: t[i, cp] = sum_k B^T[i, k] (tile row k), long sums for all column phases at
    once; then the same along columns, written straight into V's planes, all rows i at once.
    (Stacked views: one call per output row instead of one per phase or per row, a third of
    the NumPy calls, each of which holds the GIL; with two threads that bought 5-12 % per conv.)
    """
    xp, a, m = get_array_module(q), tf.a, tf.m
    n_t = grid.size + 1  # t is read with column shifts 0 and 1
    t = xp.empty((a, m, n_t), dtype=q.dtype)
    _combine(tf.b_t_sums, [q[k % m, :, grid.shift(k, 0):grid.shift(k, 0) + n_t] for k in range(a)], t)
    v = xp.empty((a, a, grid.size), dtype=q.dtype)
    _combine(tf.b_t_sums, [t[:, l % m, l // m:l // m + grid.size] for l in range(a)], v.transpose(1, 0, 2))
    return v.reshape(a * a, grid.c, grid.tiles)


def input_transform_adjoint(dv, grid, tf):
    """dV (a*a, C, tiles) -> phase planes of d padded = sum over tiles of B dV B^T, added back
    at each tile's place (columns first, then rows: the reverse of ``input_transform``)."""
    xp, a, m = get_array_module(dv), tf.a, tf.m
    n_t = grid.size + 1
    dv = dv.reshape(a, a, grid.size)
    dt = xp.zeros((a, m, n_t), dtype=dv.dtype)
    _combine_adjoint(tf.b_t_rows, dv.transpose(1, 0, 2), [dt[:, l % m, l // m:l // m + grid.size] for l in range(a)])
    dq = grid.zero_planes(xp, dv.dtype)
    _combine_adjoint(tf.b_t_rows, dt, [dq[k % m, :, grid.shift(k, 0):grid.shift(k, 0) + n_t] for k in range(a)])
    return dq


def output_transform(mm, grid, tf, y):
    """M (a*a, O, tiles) -> y (O, n, OH, OW), written in place: A^T M A for every tile, whose
    m x m block (i, j) lands in the strided view y[:, :, i::m, j::m] (junk tiles and, when OH or
    OW is not a multiple of m, the last part tiles dropped)."""
    xp, a, m = get_array_module(mm), tf.a, tf.m
    o = mm.shape[1]
    mm = mm.reshape(a, a, o * grid.tiles)
    z = xp.empty((m, a, o * grid.tiles), dtype=mm.dtype)  # A^T along rows, long flat sums
    _combine(tf.a_t_sums, mm, z)
    block = xp.empty((m, m, o * grid.tiles), dtype=mm.dtype)  # then along columns, all rows i at once
    _combine(tf.a_t_sums, z.transpose(1, 0, 2), block.transpose(1, 0, 2))
    for i in range(m):
        for j in range(m):
            dst = y[:, :, i::m, j::m]
            dst[...] = block[i, j].reshape((o,) + grid.plane[1:])[:, :, :dst.shape[2], :dst.shape[3]]


def output_transform_adjoint(dy, grid, tf):
    """dy (O, n, OH, OW) -> dM (a*a, O, tiles) = A dY A^T for every tile's m x m block of dy
    (zero for junk tiles and missing part tiles)."""
    xp, a, m = get_array_module(dy), tf.a, tf.m
    o = dy.shape[0]
    e = xp.zeros((m, m, o) + grid.plane[1:], dtype=dy.dtype)
    for i in range(m):
        for j in range(m):
            src = dy[:, :, i::m, j::m]
            e[i, j, :, :, :src.shape[2], :src.shape[3]] = src
    e = e.reshape(m, m, o * grid.tiles)
    z = xp.empty((a, m, o * grid.tiles), dtype=dy.dtype)  # A along rows, all columns j at once
    _combine(tf.a_sums, e, z)
    dm = xp.empty((a, a, o * grid.tiles), dtype=dy.dtype)  # then along columns, all rows at once
    _combine(tf.a_sums, z.transpose(1, 0, 2), dm.transpose(1, 0, 2))
    return dm.reshape(a * a, o, grid.tiles)


def weight_transform(weight, tf):
    """weight (O, C, 3, 3) -> U (a*a, O, C) = G g G^T for every (o, c)."""
    xp = get_array_module(weight)
    g = xp.asarray(tf.G, dtype=weight.dtype)
    o, c = weight.shape[:2]
    # optimize=True: einsum as two BLAS products; its one naive loop took 0.57 ms at 64 channels (0.18 now)
    return xp.einsum("ai,ocij,bj->aboc", g, weight, g, optimize=True).reshape(tf.a * tf.a, o, c)


def weight_transform_adjoint(du, tf):
    """dU (a*a, O, C) -> dW (O, C, 3, 3) = G^T dU G."""
    xp = get_array_module(du)
    g = xp.asarray(tf.G, dtype=du.dtype)
    o, c = du.shape[1:]
    # optimize=True as above: 1.64 ms -> 0.11 ms at 64 channels, on one thread while the pool waits
    return xp.einsum("ai,aboc,bj->ocij", g, du.reshape(tf.a, tf.a, o, c), g, optimize=True)


# ----------------------------------------------------------------------------- the kernels

def _chunks(x, c, oh, ow, tf):
    """The batch's chunks (image slices) with about CHUNK_BYTES of V each."""
    v_per_image = tf.a * tf.a * TileGrid(c, 1, oh, ow, tf.m).size  # a*a planes of one image's tiles
    return batch_chunks(x.shape[0], v_per_image * x.dtype.itemsize, CHUNK_BYTES)


def winograd_forward(x, weight, bias, padding, tf=F2):
    """The conv's output (N, O, OH, OW), a view of channels-last memory as im2col's.

    Forward: V = B^T d B, M = U @ V, y = A^T M A, chunk by chunk on the worker threads.
    """
    n, c, h, w = x.shape
    o = weight.shape[0]
    ph, pw = padding
    oh, ow = h + 2 * ph - 2, w + 2 * pw - 2
    u = weight_transform(weight, tf)
    out = np.empty((n, oh, ow, o), dtype=x.dtype)  # channels-last, as im2col's output
    out_c = out.transpose(3, 0, 1, 2)  # the (O, n, OH, OW) view the output transform writes

    def chunk_forward(images):
        grid = TileGrid(c, images.stop - images.start, oh, ow, tf.m)
        v = input_transform(to_phase_planes(x[images], grid, ph, pw), grid, tf)
        output_transform(np.matmul(u, v), grid, tf, out_c[:, images])

    parallel_map(chunk_forward, _chunks(x, c, oh, ow, tf))
    if bias is not None:
        out += bias
    return out.transpose(0, 3, 1, 2)


def winograd_backward(x, weight, gy, padding, needs_input_grad, tf=F2):
    """(dx, dW, db), each None where ``needs_input_grad`` says no: dM = A dY A^T,
    dW = G^T (dM @ V^T) G, dx = B (U^T @ dM) B^T added back into the tiles and cropped, db = sum dy."""
    ph, pw = padding
    n, c, h, w = x.shape
    gy_c = gy.transpose(1, 0, 2, 3)  # (O, N, OH, OW): a view, read strided
    oh, ow = gy_c.shape[2:]
    need_x, need_w, need_b = needs_input_grad
    gx = np.empty((n, h, w, c), dtype=x.dtype) if need_x else None  # channels-last, as im2col's dx
    gx_c = None if gx is None else gx.transpose(3, 0, 1, 2)  # the (C, n, H, W) view written below
    u_t = weight_transform(weight, tf).transpose(0, 2, 1) if need_x else None  # tiny: recomputed, not saved

    def chunk_backward(images):  # returns this chunk's share of dU^T (a*a, C, O)
        grid = TileGrid(c, images.stop - images.start, oh, ow, tf.m)
        dm = output_transform_adjoint(gy_c[:, images], grid, tf)
        du_t = None
        if need_w:
            v = input_transform(to_phase_planes(x[images], grid, ph, pw), grid, tf)
            du_t = v @ dm.transpose(0, 2, 1)  # dU^T = V @ dM^T, transposed as in conv.py's dW
        if need_x:
            from_phase_planes(input_transform_adjoint(u_t @ dm, grid, tf), grid, ph, pw, gx_c[:, images])
        return du_t

    shares = parallel_map(chunk_backward, _chunks(x, c, oh, ow, tf))
    gw = weight_transform_adjoint(sum(shares[1:], shares[0]).transpose(0, 2, 1), tf) if need_w else None
    gb = gy_c.sum(axis=(1, 2, 3)) if need_b else None
    return None if gx is None else gx.transpose(0, 3, 1, 2), gw, gb
