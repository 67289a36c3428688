"""Checks for notebook 10 (the training recipe): one SGD step with momentum and weight decay.

``check_sgd_step(sgd_step)``: the learner's ``sgd_step(w, grad, v, lr, momentum, weight_decay)``
must return ``(w_new, v_new)`` by PyTorch's rule (``torch.optim.SGD``, ``minires.optim.SGD``)::

    g = grad + weight_decay * w
    v = momentum * v + g
    w = w - lr * v

It is run step by step beside ``minires.optim.SGD`` on the same parameter and gradients, with a
learning rate that drops tenfold twice (a schedule), so that the two classic mix-ups show: weight
decay added after the momentum buffer, and Sutskever's form ``v = μ·v + lr·g; w -= v`` (the same
steps while lr is constant, different ones after a drop).
"""
import numpy as np

from ..engine import Tensor
from ..optim import SGD
from .check import check, compare, name_of, unpack

# Exaggerated weight decay, so that a misplaced decay term changes the result far beyond
# float32 rounding (with the paper's 1e-4 it would hide at the fifth digit).
_MOMENTUM, _WEIGHT_DECAY = 0.9, 0.1
_LRS = (0.1, 0.1, 0.1, 0.01, 0.01, 0.001)  # a schedule's drops after steps 3 and 5


def _usual_mistakes(w, grad, v, lr, mu, wd):
    """(name of the mistake, its v_new, its w_new, hint) for one step from (w, grad, v)."""
    g = grad + wd * w
    mistakes = []
    v_ = mu * v + grad  # decay added after the momentum buffer
    mistakes.append(("decay after momentum", v_, w - lr * (v_ + wd * w),
                     "the weight decay is added to the gradient *before* the momentum buffer: "
                     "g = grad + weight_decay * w first, then v = momentum * v + g"))
    v_ = mu * v + lr * g  # Sutskever et al.'s velocity, fed a buffer in PyTorch's units
    mistakes.append(("Sutskever", v_, w - v_,
                     "that is Sutskever's form (v = momentum * v + lr * g; w -= v), whose v is lr times "
                     "PyTorch's. PyTorch multiplies the whole step by lr: v = momentum * v + g; w -= lr * v, "
                     "so that a drop of lr takes effect at once"))
    v_ = mu * v + (1 - mu) * g  # dampening = momentum (an exponential moving average)
    mistakes.append(("dampened", v_, w - lr * v_,
                     "v = momentum * v + (1 - momentum) * g is an average with dampening; PyTorch's default "
                     "(dampening 0) adds the whole g: v = momentum * v + g"))
    mistakes.append(("no weight decay", mu * v + grad, w - lr * (mu * v + grad),
                     "the weight decay is missing: g = grad + weight_decay * w"))
    mistakes.append(("no momentum", g, w - lr * g,
                     "the momentum buffer is missing: v = momentum * v + g, then step along v"))
    v_ = mu * v + g  # Nesterov's look-ahead
    mistakes.append(("nesterov", v_, w - lr * (g + mu * v_),
                     "that is Nesterov momentum (w -= lr * (g + momentum * v)); plain momentum steps along v"))
    mistakes.append(("decay sign", mu * v + grad - wd * w, w - lr * (mu * v + grad - wd * w),
                     "weight decay pulls the weights towards zero: g = grad + weight_decay * w (a plus sign)"))
    return mistakes


def _hint(got_w, got_v, w, grad, v, lr):
    def close(a, b):
        try:
            a = np.asarray(a, dtype=np.float64)
        except (TypeError, ValueError):  # not an array: compare() will say what it got
            return False
        return a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=1e-6)

    mistakes = _usual_mistakes(w.astype(np.float64), grad.astype(np.float64), v.astype(np.float64), lr,
                               _MOMENTUM, _WEIGHT_DECAY)
    # Both outputs matching a mistake identify it best (two mistakes may share a v_new).
    for matches in (lambda v_new, w_new: close(got_v, v_new) and close(got_w, w_new),
                    lambda v_new, w_new: close(got_v, v_new),
                    lambda v_new, w_new: close(got_w, w_new)):
        for _, v_new, w_new, hint in mistakes:
            if matches(v_new, w_new):
                return hint
    return "g = grad + weight_decay * w;  v = momentum * v + g;  w = w - lr * v"


def check_sgd_step(sgd_step):
    """Check ``sgd_step(w, grad, v, lr, momentum, weight_decay) -> (w_new, v_new)``.

    Six steps on a float32 (4, 3) parameter with random gradients, momentum 0.9, weight decay
    0.1 and lr 0.1, 0.1, 0.1, 0.01, 0.01, 0.001, beside ``minires.optim.SGD`` with the same
    hyper-parameters. Each step starts from the optimizer's own weights and momentum buffer
    (``v`` is zeros before the first step: PyTorch's "buffer = g on the first step" is the same
    thing then), so a wrong formula is caught at the first step where it differs, and the hint
    names the usual mistake it matches. Passes when every step agrees to float32 rounding.
    """
    def run():
        rng = np.random.default_rng(0)
        p = Tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
        opt = SGD([p], lr=_LRS[0], momentum=_MOMENTUM, weight_decay=_WEIGHT_DECAY)
        v = np.zeros_like(p.data)
        largest = 0.0
        for step, lr in enumerate(_LRS, start=1):
            w, grad = p.data.copy(), rng.standard_normal(p.data.shape).astype(np.float32)
            out = sgd_step(w.copy(), grad.copy(), v.copy(), lr, _MOMENTUM, _WEIGHT_DECAY)
            got_w, got_v = unpack(name_of(sgd_step), out, ("w_new", "v_new"))
            for group in opt.param_groups:
                group["lr"] = lr  # what a schedule's step() does
            p.grad = grad
            opt.step()
            expected_v = opt.state[0]["momentum_buffer"]
            where = f"step {step} (lr {lr})"
            hint = _hint(got_w, got_v, w, grad, v, lr)
            compare(f"{where}: the momentum buffer v_new", got_v, expected_v, rtol=1e-5, atol=1e-7, hint=hint)
            compare(f"{where}: the weights w_new", got_w, p.data, rtol=1e-5, atol=1e-7, hint=hint)
            largest = max(largest, float(np.max(np.abs(np.asarray(got_w, np.float64) - p.data))))
            v = expected_v.copy()
        exact = "bit for bit" if largest == 0 else f"to float32 rounding (largest difference {largest:.2g})"
        return f"all {len(_LRS)} steps, through two lr drops, match minires.optim.SGD {exact}"

    return check("sgd_step", run)
