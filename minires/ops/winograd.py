"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray 2016).

A second algorithm for the convs that make up most of a CIFAR ResNet; ``conv.py`` (im2col)
stays the reference and handles every other shape. Cut the zero-padded input into 4x4 tiles
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
transforms are additions of strided views of whole chunks (never a matmul with a 4x4 matrix).

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
from ..engine import Function
from .conv import batch_chunks, for_each_chunk

# The transforms as matrices: only the weight transform uses G as a matrix (it is tiny); the tests
# use all three to check the additions below against the textbook formula.
B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def winograd_applies(weight_shape, stride, padding):
    """True for the convs this file handles: 3x3 kernels, stride 1, padding at most 2 (so that
    the input gradient, a full 3x3 correlation of dy, needs no negative padding)."""
    return tuple(weight_shape[2:]) == (3, 3) and tuple(stride) == (1, 1) and max(padding) <= 2


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


def input_transform(padded, th, tw):
    """Padded chunk (C, n, 2*th + 2, 2*tw + 2) -> V (16, C, n*th*tw): B^T d B for every 4x4 tile d.

    Rows first: row k of every tile is the strided view padded[:, :, k::2] (th rows), so
    B^T along rows is 4 adds of whole views into t (4, C, n, th, Wp); then the same along
    columns, written straight into V's 16 planes.
    """
    xp = get_array_module(padded)
    c, n = padded.shape[:2]
    rows = [padded[:, :, k:k + 2 * th:2, :] for k in range(4)]
    t = xp.empty((4,) + rows[0].shape, dtype=padded.dtype)
    _apply_b_t(rows, t)
    v = xp.empty((4, 4, c, n, th, tw), dtype=padded.dtype)
    for a in range(4):
        _apply_b_t([t[a][..., k:k + 2 * tw:2] for k in range(4)], v[a])
    return v.reshape(16, c, n * th * tw)


def input_transform_adjoint(dv, padded_shape, th, tw):
    """dV (16, C, n*th*tw) -> d padded (C, n, Hp, Wp) = sum over tiles of B dV B^T, each added
    back at its tile's place (columns first, then rows: the reverse of ``input_transform``)."""
    xp = get_array_module(dv)
    c, n = padded_shape[:2]
    dv = dv.reshape(4, 4, c, n, th, tw)
    dt = xp.zeros((4, c, n, th, padded_shape[3]), dtype=dv.dtype)
    for a in range(4):
        _add_b(dv[a], [dt[a][..., k:k + 2 * tw:2] for k in range(4)])
    dpadded = xp.zeros(padded_shape, dtype=dv.dtype)
    _add_b(dt, [dpadded[:, :, k:k + 2 * th:2, :] for k in range(4)])
    return dpadded


def output_transform(m, y, th, tw):
    """M (16, O, n*th*tw) -> y (O, n, OH, OW), written in place: A^T m A for every tile, whose
    2x2 block (i, j) lands in the strided view y[:, :, i::2, j::2] (cropped when OH or OW is odd)."""
    xp = get_array_module(m)
    o, n = y.shape[:2]
    m = m.reshape(4, 4, o, n, th, tw)
    z = xp.empty((2, 4, o, n, th, tw), dtype=m.dtype)  # A^T along rows
    _apply_a_t(m, z[0], z[1])
    for i in range(2):
        for j, dst in enumerate(_blocks(y, i)):
            hi, wj = dst.shape[2:]
            part = [z[i, b, :, :, :hi, :wj] for b in range(4)]
            if j == 0:
                xp.add(part[0], part[1], out=dst)
                dst += part[2]
            else:
                xp.subtract(part[1], part[2], out=dst)
                dst -= part[3]


def output_transform_adjoint(dy, th, tw):
    """dy (O, n, OH, OW) -> dM (16, O, n*th*tw) = A dY A^T for every tile's 2x2 block of dy."""
    xp = get_array_module(dy)
    o, n, oh, ow = dy.shape
    if oh % 2 or ow % 2:  # odd output: the last tiles' missing rows/columns get zero gradient
        full = xp.zeros((o, n, 2 * th, 2 * tw), dtype=dy.dtype)
        full[:, :, :oh, :ow] = dy
        dy = full
    z = xp.empty((4, 2, o, n, th, tw), dtype=dy.dtype)  # A along rows
    for j in range(2):
        _apply_a(dy[:, :, 0::2, j::2], dy[:, :, 1::2, j::2], z[:, j])
    dm = xp.empty((4, 4, o, n, th, tw), dtype=dy.dtype)
    for a in range(4):
        _apply_a(z[a, 0], z[a, 1], dm[a])
    return dm.reshape(16, o, n * th * tw)


def _blocks(y, i):
    """The two strided views y[:, :, i::2, 0::2] and y[:, :, i::2, 1::2]: outputs (i, 0) and (i, 1) of every tile."""
    return y[:, :, i::2, 0::2], y[:, :, i::2, 1::2]


def weight_transform(weight):
    """weight (O, C, 3, 3) -> U (16, O, C) = G g G^T for every (o, c)."""
    xp = get_array_module(weight)
    g = xp.asarray(G, dtype=weight.dtype)
    o, c = weight.shape[:2]
    return xp.einsum("ai,ocij,bj->aboc", g, weight, g).reshape(16, o, c)


def weight_transform_adjoint(du):
    """dU (16, O, C) -> dW (O, C, 3, 3) = G^T dU G."""
    xp = get_array_module(du)
    g = xp.asarray(G, dtype=du.dtype)
    o, c = du.shape[1:]
    return xp.einsum("ai,aboc,bj->ocij", g, du.reshape(4, 4, o, c), g)


# ----------------------------------------------------------------------------- the op

def pad_to_tiles(x, ph, pw, th, tw):
    """x (n, C, H, W) -> channel-major (C, n, 2*th + 2, 2*tw + 2): ph/pw zeros on top/left, and
    enough at the bottom/right (at least ph/pw) for th x tw whole tiles."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.zeros((c, n, 2 * th + 2, 2 * tw + 2), dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = x.transpose(1, 0, 2, 3)
    return out


class Winograd2d(Function):
    """The same y as ``conv.Conv2d`` for 3x3 kernels at stride 1, by F(2x2, 3x3) (module docstring).

    Forward: V = B^T d B, M = U @ V, y = A^T M A.  Backward: dM = A dY A^T, dW = G^T (dM @ V^T) G,
    dx = B (U^T @ dM) B^T added back into the tiles and cropped; db = sum of dy.
    """

    def __init__(self, padding):
        self.padding = padding

    def forward(self, x, weight, bias):
        xp = get_array_module(x)
        n, c, h, w = x.shape
        o = weight.shape[0]
        ph, pw = self.padding
        oh, ow = h + 2 * ph - 2, w + 2 * pw - 2
        th, tw = -(-oh // 2), -(-ow // 2)
        u = weight_transform(weight)
        out = xp.empty((o, n, oh, ow), dtype=x.dtype)  # channel-major, as conv.Conv2d's output

        def chunk_forward(chunk):
            images, _ = chunk
            v = input_transform(pad_to_tiles(x[images], ph, pw, th, tw), th, tw)
            output_transform(xp.matmul(u, v), out[:, images], th, tw)

        for_each_chunk(chunk_forward, batch_chunks(x, 16 * c, th * tw), xp)
        if bias is not None:
            out += bias[:, None, None, None]
        self.x, self.u = x, u
        return out.transpose(1, 0, 2, 3)

    def backward(self, gy):
        xp = get_array_module(gy)
        x, u = self.x, self.u
        ph, pw = self.padding
        n, c, h, w = x.shape
        o, _, oh, ow = gy.transpose(1, 0, 2, 3).shape
        th, tw = -(-oh // 2), -(-ow // 2)
        gy_c = gy.transpose(1, 0, 2, 3)  # (O, N, OH, OW): a view, contiguous when gy is channel-major
        needs = [t is not None and t.requires_grad for t in self.inputs]
        gx = xp.empty((c, n, h, w), dtype=x.dtype) if needs[0] else None
        u_t = u.transpose(0, 2, 1)

        def chunk_backward(chunk):  # returns this chunk's share of dU^T (16, C, O)
            images, _ = chunk
            dm = output_transform_adjoint(gy_c[:, images], th, tw)
            du_t = None
            if needs[1]:
                v = input_transform(pad_to_tiles(x[images], ph, pw, th, tw), th, tw)
                du_t = v @ dm.transpose(0, 2, 1)  # dU^T = V @ dM^T, transposed as in conv.py's dW
            if needs[0]:
                nb = images.stop - images.start
                dpad = input_transform_adjoint(u_t @ dm, (c, nb, 2 * th + 2, 2 * tw + 2), th, tw)
                gx[:, images] = dpad[:, :, ph:ph + h, pw:pw + w]
            return du_t

        shares = for_each_chunk(chunk_backward, batch_chunks(x, 16 * c, th * tw), xp)
        gw = weight_transform_adjoint(sum(shares[1:], shares[0]).transpose(0, 2, 1)) if needs[1] else None
        gb = gy_c.sum(axis=(1, 2, 3)) if needs[2] else None
        return (None if gx is None else gx.transpose(1, 0, 2, 3), gw, gb)
