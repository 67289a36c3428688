"""``gradcheck``: compare backward's gradients with central finite differences.

For a random upstream gradient g (never just sum(f): a sum hides errors that cancel,
batch norm's input gradient being the classic case) the scalar L(x) = <f(x), g> has

    dL/dx_i  ~=  (L(x + eps e_i) - L(x - eps e_i)) / (2 eps)

which must match the analytic gradient x.grad after f(x).backward(g), element by element:
|analytic - numeric| <= atol + rtol * |numeric|.
"""
import numpy as np

from .backend import get_array_module, to_numpy
from .engine import Tensor, no_grad


class GradcheckError(AssertionError):
    """Raised by ``gradcheck`` when an analytic gradient disagrees with the numeric one."""


def _output(fn, inputs):
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    return out


def _central_differences(x, loss, eps):
    """(loss(x + eps e_k) - loss(x - eps e_k)) / (2 eps) for every element k of the contiguous ``x``,
    perturbed in place and restored."""
    flat = x.reshape(-1)  # a view of a contiguous array: writing into it perturbs the input
    numeric = np.zeros(x.size)
    for k in range(x.size):
        orig = float(flat[k])
        flat[k] = orig + eps
        plus = loss()
        flat[k] = orig - eps
        minus = loss()
        flat[k] = orig
        numeric[k] = (plus - minus) / (2 * eps)
    return numeric


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """Check ``fn``'s backward against central differences, for every input that requires grad.

    ``inputs`` is a Tensor or a sequence of Tensors (and other arguments passed through);
    those that require grad must be float64. Returns True, or raises ``GradcheckError``
    naming the input, the worst element, and the analytic and numeric values.
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad; create them with requires_grad=True")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; finite differences need float64 "
                "(make the inputs with .double() or dtype float64)"
            )

    # Analytic: one backward pass with a random upstream gradient g.
    for i in checked:
        inputs[i].grad = None
    out = _output(fn, inputs)
    xp = get_array_module(out.data)
    g = np.random.default_rng(seed).standard_normal(out.shape)
    g = xp.asarray(g, dtype=out.dtype)
    out.backward(g)
    analytic = {i: (inputs[i].grad if inputs[i].grad is not None else xp.zeros_like(inputs[i].data)) for i in checked}

    # Numeric: perturb one element at a time, in place, and evaluate <f, g> twice.
    def loss():
        with no_grad():
            return float((_output(fn, inputs).data * g).sum())

    for i in checked:
        x = inputs[i].data
        if not x.flags.c_contiguous:
            x = inputs[i].data = xp.ascontiguousarray(x)
        numeric = _central_differences(x, loss, eps)
        got = to_numpy(analytic[i]).reshape(-1)
        err = np.abs(got - numeric) - (atol + rtol * np.abs(numeric))
        if x.size and err.max() > 0:
            k = int(err.argmax())
            where = np.unravel_index(k, x.shape)
            bad = int((err > 0).sum())
            raise GradcheckError(
                f"gradcheck failed for input {i} (shape {tuple(x.shape)}): {bad} of {x.size} elements disagree.\n"
                f"  worst element {tuple(int(w) for w in where)}: analytic {got[k]:.10g}, numeric {numeric[k]:.10g}, "
                f"difference {abs(got[k] - numeric[k]):.3g} > atol + rtol*|numeric| = {atol + rtol * abs(numeric[k]):.3g}"
            )
    return True
