"""2-D convolution by im2col / col2im: three readable steps, one matrix product.

Forward, for x (N, C, H, W) and weight (O, C, kh, kw), the whole batch at once::

    padded  (C, N, Hp, Wp)              pad_channel_major: a channel-major copy with zero borders
    cols    (C*kh*kw, N*OH*OW)          im2col: a strided *view* of every window, then one copy
    out     (O, N*OH*OW) = W (O, C*kh*kw) @ cols          one matmul
    y       (N, O, OH, OW)              a transposed view of out, no copy

Backward, for dy (N, O, OH, OW)::

    dy2     (O, N*OH*OW)                a reshape of dy (free when dy is channel-major, as ours are)
    dW      = dy2 @ cols^T              one matmul, cols recomputed from x (x is kept anyway; the
                                        columns would be kh*kw times its memory)
    dcols   = W^T @ dy2                 one matmul
    dx      = col2im(dcols)             kh*kw strided slice-adds into a zero (C, N, Hp, Wp) buffer, cropped

The three steps are in ``im2col.py``; every op in minires is layout-agnostic (NumPy/CuPy ufuncs
follow their inputs' memory order), so users only ever see ordinary NCHW tensors.

This is the reference, and what runs on the GPU (a GPU wants big kernels). On NumPy data the
engine runs the CPU kernels instead (``forward_cpu``): the same steps on cache-sized chunks of
the batch on the worker threads, with the matrices the other way round (one row per output
pixel), so that outputs and dx are channels-last memory (``minires/cpu_kernels/conv.py``), or, for
the 3x3 stride-1 convs, Winograd's F(2x2, 3x3) or F(4x4, 3x3) (``minires/cpu_kernels/winograd.py``).
``conv2d(..., algorithm=...)`` chooses; "auto" times them on this machine, per shape, for the
forward and the backward (``minires/autotune/``); ``use_algorithm`` sets the policy.
"""
from .._checks import pair
from ..backend import device_of
from .. import autotune as autotune_policy
from ..cpu_kernels import conv as im2col_kernels, winograd as winograd_kernels
from ..engine import Function, as_tensor
from ..threads import get_num_threads
from .im2col import col2im, conv_output_size, im2col, pad_channel_major


class Conv2d(Function):
    """y[n, o] = sum_{c,i,j} W[o, c, i, j] * x_pad[n, c, s*y + i, s*x + j] + b[o]   (cross-correlation)

    dW = dy2 @ cols^T,   db = sum of dy over N, OH, OW,   dx = col2im(W^T @ dy2), cropped.

    ``algorithm`` (as ``conv2d`` resolved it) picks the CPU kernel; "auto" picks per shape, for
    the forward and for the backward, and ``self.algorithms`` says which ran
    ({"forward": ..., "input_grad": ..., "weight_grad": ...}).
    """

    def __init__(self, stride, padding, algorithm="im2col"):
        self.stride, self.padding, self.algorithm = stride, padding, algorithm

    def forward(self, x, weight, bias):
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        oh, ow = conv_output_size(h, kh, sh, ph), conv_output_size(w, kw, sw, pw)
        cols = im2col(pad_channel_major(x, ph, pw), kh, kw, sh, sw, oh, ow)  # (C*kh*kw, N*OH*OW)
        out = weight.reshape(o, -1) @ cols                                     # (O, N*OH*OW)
        if bias is not None:
            out += bias[:, None]
        self.x, self.weight = x, weight  # x is kept alive by the graph anyway: saving it is free
        return out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)

    def backward(self, gy):
        x, weight = self.x, self.weight
        n, c, h, w = x.shape
        o, _, kh, kw = weight.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        oh, ow = gy.shape[2:]
        gy2 = gy.transpose(1, 0, 2, 3).reshape(o, -1)  # (O, N*OH*OW)
        need_x, need_w, need_b = self.needs_input_grad
        gx = gw = gb = None
        if need_w:
            cols = im2col(pad_channel_major(x, ph, pw), kh, kw, sh, sw, oh, ow)
            gw = (gy2 @ cols.T).reshape(weight.shape)
        if need_x:
            gpad = col2im(weight.reshape(o, -1).T @ gy2, (c, n, h + 2 * ph, w + 2 * pw), kh, kw, sh, sw, oh, ow)
            gx = gpad[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3)
        if need_b:
            gb = gy2.sum(axis=1)
        return gx, gw, gb

    # --- NumPy: the kernels of minires/cpu_kernels (chunks on threads, or Winograd), for each direction

    def forward_cpu(self, x, weight, bias):
        self.x, self.weight, self.algorithms = x, weight, {}
        calls = {a: (lambda a=a: _forward_kernel(a, x, weight, bias, self.stride, self.padding))
                 for a in self._candidates(x, weight)}
        name = self._pick("forward", x, weight, calls)
        self.algorithms["forward"] = name
        return calls[name]()

    def backward_cpu(self, gy):
        """dx and dW each by an algorithm, one kernel call when both agree.

        "auto" times the backward as it will run: with both gradients needed, every pair
        (dx's algorithm, dW's), because one kernel call shares work between them (Winograd
        transforms dy once for both) that two calls repeat; choosing each alone picked pairs
        slower than either kernel doing both.
        """
        x, weight, (need_x, need_w, need_b) = self.x, self.weight, self.needs_input_grad

        def run(for_x, for_w):
            if for_x is None or for_w is None or for_x == for_w:
                return _backward_kernel(for_x or for_w, x, weight, gy, self.stride, self.padding,
                                        self.needs_input_grad)
            gx, _, gb = _backward_kernel(for_x, x, weight, gy, self.stride, self.padding, (True, False, need_b))
            return gx, _backward_kernel(for_w, x, weight, gy, self.stride, self.padding, (False, True, False))[1], gb

        if not (need_x or need_w):  # only db: nothing to choose between, the im2col kernel sums dy
            return _backward_kernel("im2col", x, weight, gy, self.stride, self.padding, self.needs_input_grad)
        names = self._candidates(x, weight)
        pairs = {a: (a if need_x else None, a if need_w else None) for a in names}
        if need_x and need_w:
            pairs.update({f"{a} for dx, {b} for dW": (a, b) for a in names for b in names if a != b})
        direction = "backward" if need_x and need_w else "input_grad" if need_x else "weight_grad"
        name = self._pick(direction, x, weight, {n: (lambda p=p: run(*p)) for n, p in pairs.items()})
        for_x, for_w = pairs[name]
        self.algorithms.update({d: a for d, a in (("input_grad", for_x), ("weight_grad", for_w)) if a})
        return run(for_x, for_w)

    def _candidates(self, x, weight):
        """The kernels that could run: the requested one, or for "auto" all that apply."""
        if self.algorithm != "auto":
            return [self.algorithm]
        return ["im2col"] + (list(winograd_kernels.TRANSFORMS) if _winograd_runs(x, weight, self.stride) else [])

    def _pick(self, direction, x, weight, calls):
        """The one candidate, or for "auto" the autotuner's choice among ``calls`` (name -> the call it times)."""
        if self.algorithm != "auto":
            return next(iter(calls))
        k = autotune_policy.key(direction, x.shape, weight.shape, self.stride, self.padding, x.dtype, get_num_threads())
        rule = fixed_rule(x, weight, self.stride, self.padding)
        return autotune_policy.choose(k, calls, rule)


def _forward_kernel(name, x, weight, bias, stride, padding):
    if name == "im2col":
        return im2col_kernels.conv2d_forward(x, weight, bias, stride, padding)
    return winograd_kernels.winograd_forward(x, weight, bias, padding, winograd_kernels.TRANSFORMS[name])


def _backward_kernel(name, x, weight, gy, stride, padding, needs_input_grad):
    if name == "im2col":
        return im2col_kernels.conv2d_backward(x, weight, gy, stride, padding, needs_input_grad)
    return winograd_kernels.winograd_backward(x, weight, gy, padding, needs_input_grad,
                                              winograd_kernels.TRANSFORMS[name])


ALGORITHMS = ("auto", "im2col", "winograd", "winograd4")
default_algorithm = "auto"  # what conv2d(..., algorithm=None) uses; use_algorithm changes it


class use_algorithm:
    """The convolution algorithm policy: the one place that sets it.

    ``use_algorithm("im2col")`` switches for the rest of the program; ``with use_algorithm(...):``
    for one block only (the policy before it comes back at its end), as ``use_reference``.

    * ``algorithm``: what a ``conv2d`` call that names none uses (``nn.Conv2d``'s included):
      "auto" (the default), "im2col", "winograd" (F(2x2, 3x3)) or "winograd4" (F(4x4, 3x3)).
      A Winograd name runs where Winograd can (3x3 kernels, stride 1, NumPy data) and im2col on
      every other conv, so a whole network can be switched; named in one call, it must apply.
    * ``autotune``: whether "auto" times the candidates on this machine (``minires/autotune/``)
      or follows the fixed rule (``fixed_rule``). Initially ``$MINIRES_AUTOTUNE`` (default 1).

    Precedence, strongest first:

    1. the reference switch (``minires.use_reference()``, ``$MINIRES_REFERENCE=1``): every conv
       runs the reference im2col of this file, whatever was asked;
    2. an algorithm named in the call, ``conv2d(..., algorithm="im2col")``, for all directions;
    3. this policy's ``algorithm``, for calls that name none (or name None);
    4. for "auto", per shape for the forward and for the backward: a choice pinned by a training run
       (``autotune.pinned``: recorded in its config, reused by ``--resume``, rank 0's in a
       distributed run), else this machine's cached or newly timed winner when ``autotune`` is
       on, else ``fixed_rule``.

    The environment variables give the initial values only; this call overrides them.
    """

    def __init__(self, algorithm=None, *, autotune=None):
        global default_algorithm
        if algorithm is not None:
            _check_algorithm("use_algorithm", algorithm)
        self._previous = default_algorithm, autotune_policy.is_enabled()
        if autotune is not None:
            autotune_policy.set_enabled(autotune)
        if algorithm is not None:
            default_algorithm = algorithm

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        global default_algorithm
        default_algorithm, enabled = self._previous
        autotune_policy.set_enabled(enabled)
        return False


def _check_algorithm(fname, name):
    if name not in ALGORITHMS:
        raise ValueError(f"{fname}: algorithm must be one of {ALGORITHMS}, got {name!r}")
    return name


def _winograd_runs(x, weight, stride):
    """Whether a Winograd kernel can run this conv: NumPy data, a 3x3 kernel, stride 1."""
    return device_of(x) != "gpu" and winograd_kernels.winograd_applies(weight.shape, stride)


def fixed_rule(x, weight, stride, padding):
    """"im2col" for every conv: what "auto" runs when timing is off (``MINIRES_AUTOTUNE=0``, the tests).

    Measured on an Intel Xeon (forward + backward, batch 128, benchmarks/README.md, rounds five
    and six): the channels-last im2col kernel was the fastest single algorithm on every ResNet conv
    shape at 1 and 2 threads (round five: all but 8 -> 8 channels at 32 px at 1 thread). Timing
    on, "auto" also keeps this choice in a near-tie (``autotune.MARGIN``).
    Round three's rule, F(2x2) for 8 to 64 channels at 8 px and more, was measured on an AMD EPYC
    against the channel-major im2col of that time, 1.3-2x slower than F(2x2) there; the
    channels-last kernel has not been timed on that machine, and F(2x2) may still win there.
    Timing on (the default) measures instead of assuming. On the GPU im2col is the only path.
    """
    return "im2col"


def _check_inputs(x, weight, bias, padding):
    """conv2d's checks of shapes and dtypes, with the shapes in the message."""
    if x.ndim != 4:
        raise ValueError(f"conv2d: input x must be 4-D (N, C, H, W), got shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (out_channels, in_channels, kh, kw), got shape {weight.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"conv2d: input x has {x.shape[1]} channels (shape {x.shape}) but weight expects "
            f"{weight.shape[1]} (weight shape {weight.shape})"
        )
    kh, kw = weight.shape[2:]
    hp, wp = x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1]
    if kh > hp or kw > wp:
        raise ValueError(
            f"conv2d: kernel {kh}x{kw} is larger than the padded input {hp}x{wp} "
            f"(x shape {x.shape}, padding {padding})"
        )
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != x.dtype:
            raise TypeError(f"conv2d: {name} has dtype {t.dtype} but x has {x.dtype}")


def _resolve_algorithm(algorithm, x, weight, stride, padding):
    """The algorithm asked for: None resolved to the policy's, a Winograd name checked where it
    applies ("auto" is resolved for the forward and the backward when the kernels run, ``Conv2d._pick``)."""
    if algorithm is None:  # the policy's: a Winograd name means "where it applies", im2col elsewhere
        algorithm = default_algorithm
        if algorithm.startswith("winograd") and not _winograd_runs(x.data, weight, stride):
            return "im2col"
    algorithm = _check_algorithm("conv2d", algorithm)
    if algorithm.startswith("winograd"):  # asked for by this call: an error where it cannot run
        if device_of(x.data) == "gpu":
            raise ValueError(f"conv2d: algorithm {algorithm!r} runs on NumPy (CPU) data only; use 'im2col' or "
                             "'auto' on the GPU")
        if not winograd_kernels.winograd_applies(weight.shape, stride):
            raise ValueError(
                f"conv2d: algorithm {algorithm!r} needs a 3x3 kernel and stride 1, got weight shape "
                f"{weight.shape} and stride {stride} (use 'im2col' or 'auto')"
            )
    return algorithm


def conv2d(x, weight, bias=None, stride=1, padding=0, algorithm=None):
    """2-D convolution (cross-correlation) as ``torch.nn.functional.conv2d``.

    x (N, C, H, W), weight (O, C, kh, kw), bias (O,) or None; stride and padding are ints
    or (h, w) pairs. Returns (N, O, OH, OW) with OH = (H + 2*pad - kh) // stride + 1.

    ``algorithm`` (minires only) picks the CPU kernel: "im2col" (any shape), "winograd" or
    "winograd4" (Winograd's F(2x2, 3x3) or F(4x4, 3x3): 3x3 kernels at stride 1, NumPy data only),
    "auto" (the fastest measured on this machine, forward and backward: ``minires/autotune/``), or None
    for the policy's default (``use_algorithm``, which also gives the precedence). All give the
    reference's numbers up to float rounding (F(4x4)'s is larger: see its file).
    """
    x, weight = as_tensor(x), as_tensor(weight)
    bias = None if bias is None else as_tensor(bias)
    stride = pair("conv2d", "stride", stride, 1)
    padding = pair("conv2d", "padding", padding, 0)
    _check_inputs(x, weight, bias, padding)
    algorithm = _resolve_algorithm(algorithm, x, weight, stride, padding)
    return Conv2d(stride, padding, algorithm)(x, weight, bias)
