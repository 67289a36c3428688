"""One SGD training step, the one every loop in minires runs.

``minires.train.Trainer`` calls it for each batch, ``cuda_graph.CUDAGraphStep`` captures it as a
CUDA graph, and the benchmarks time it: so what is measured and what is replayed is what trains.
"""
from . import functional as F


def train_step(model, optimizer, x, y, before_update=None):
    """One step of ``model`` on the batch ``x`` (a Tensor, N x C x H x W) with integer class
    targets ``y`` (an array of N): zero the gradients, cross-entropy of the logits, backward,
    ``optimizer.step()``.

    Returns ``(loss, errors)``: the mean loss and the number of misclassified images as 0-d
    arrays of the data's device. Nothing in here waits for the device (no ``.item()``, no
    ``float()``), so a CUDA graph can capture it. ``before_update(loss, errors)``, if given, is
    called between backward and the update: the Trainer checks the loss there and, when
    distributed, averages the gradients over the ranks.
    """
    optimizer.zero_grad()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    errors = (logits.data.argmax(axis=1) != y).sum()
    if before_update is not None:
        before_update(loss.data, errors)
    optimizer.step()
    return loss.data, errors
