"""Reference solutions for notebook 10 (the training recipe): one block per exercise."""

# %% exercise: sgd_step
def sgd_step(w, grad, v, lr, momentum, weight_decay):
    """One step of SGD with momentum and weight decay, by PyTorch's rule.

    w, grad, v: float32 arrays of one shape (v is the momentum buffer: zeros before the first step).
    lr, momentum, weight_decay: floats. Returns (w_new, v_new), new arrays.
    """
    g = grad + weight_decay * w   # weight decay: the gradient of (weight_decay / 2) * ||w||^2
    v = momentum * v + g          # the buffer sums past gradients, each step's share shrinking by momentum
    return w - lr * v, v          # lr scales the whole step, so a drop of lr acts at once
