"""Looking inside a network: what chosen layers output, and what gradient reaches those outputs.

``record_layers(modules)`` is a context manager. While it is open, every call of one of the
``modules`` passes its output through a *probe*: an op that is the identity forward and, in
backward, keeps the gradient that arrives at that output before handing it on unchanged
(PyTorch users do this with ``register_forward_hook`` plus ``tensor.register_hook``)::

    with record_layers([(f"block{i}", b) for i, b in enumerate(model.blocks())]) as rec:
        F.cross_entropy(model(x), y).backward()
    rec.outputs["block0"]   # the block's output, an array (N, C, H, W)
    rec.grads["block0"]     # dL/d(that output), same shape: the gradient that flowed back to it

A tensor used twice (a block's output feeds the next block's branch *and* its shortcut)
gets the sum of both gradients before its probe sees it, so ``grads`` holds the total.

``layer_stats(model, x, target, modules)`` does one forward and backward of the
cross-entropy loss and reduces those arrays to two numbers per layer: the standard
deviation of the output and the L2 norm of its gradient. ``weight_grad_norms(model)``
reads the norm of every convolution and linear weight's ``.grad`` after a backward.
"""
from collections import OrderedDict, namedtuple
from contextlib import contextmanager

import numpy as np

from . import functional as F
from .backend import get_array_module
from .engine import Function, Tensor
from .nn import Conv2d, Linear, Module


class Probe(Function):
    """y = x (the same array, no copy). Backward: dx = dy, and ``on_grad(dy)`` is called first."""

    def __init__(self, on_grad):
        self.on_grad = on_grad

    def forward(self, x):
        return x

    def backward(self, grad_output):
        self.on_grad(grad_output)
        return (grad_output,)


class LayerRecord:
    """What ``record_layers`` collected: ``outputs[name]`` and ``grads[name]`` (backend arrays).

    ``grads[name]`` is filled in by ``backward()``; a layer whose output did not reach the loss
    (or that ran under ``no_grad``) has no entry. A module called more than once keeps its last
    output, and the sum of the gradients of all its calls.
    """

    def __init__(self, names):
        self.names = list(names)
        self.outputs = OrderedDict()
        self.grads = OrderedDict()

    def _keep_grad(self, name, grad):
        self.grads[name] = grad.copy() if name not in self.grads else self.grads[name] + grad


def _named(modules, where):
    pairs = list(modules.items()) if hasattr(modules, "items") else list(modules)
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], Module)):
            raise TypeError(f"{where}: modules must be (name, Module) pairs or a {{name: Module}} dict; "
                            f"entry {i} is {pair!r}")
    names = [name for name, _ in pairs]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: module names must be unique, got {names}")
    return pairs


@contextmanager
def record_layers(modules):
    """Record the output of each module and the gradient reaching it, while the block is open.

    ``modules`` is a ``{name: module}`` dict or a list of ``(name, module)`` pairs (e.g. from
    ``model.named_modules()``). Yields a ``LayerRecord``; the hooks are removed on exit.
    """
    pairs = _named(modules, "record_layers")
    record = LayerRecord(name for name, _ in pairs)
    handles = []
    for name, module in pairs:
        def hook(mod, args, out, name=name):
            if not isinstance(out, Tensor):
                raise TypeError(f"record_layers: module {name!r} returned a {type(out).__name__}, not a Tensor")
            record.outputs[name] = out.data
            # Probe(...)(out) records the probe in the graph only when out needs a gradient.
            return Probe(lambda g: record._keep_grad(name, g))(out)
        handles.append(module.register_forward_hook(hook))
    try:
        yield record
    finally:
        for h in handles:
            h.remove()


LayerStats = namedtuple("LayerStats", ["names", "act_std", "grad_norm", "loss"])
LayerStats.__doc__ = """Per-layer statistics: ``act_std[i]`` is the standard deviation of layer i's output
over all its elements (batch, channels, pixels), ``grad_norm[i]`` the L2 norm of dL/d(that output)
over the whole batch, both NumPy float arrays in the order of ``names``; ``loss`` the loss value."""


def layer_stats(model, x, target, modules):
    """One forward and backward of ``F.cross_entropy(model(x), target)``, reduced per layer.

    ``x`` is a Tensor or array (N, C, H, W), ``target`` integer classes (N,). Returns a
    ``LayerStats``. Parameter gradients are left in ``.grad`` (accumulated as by any backward:
    call ``model.zero_grad()`` first if they should hold only this batch's). The model's mode
    (train or eval) is used as it is: in training mode batch norm normalises with the batch's
    statistics and updates its running ones, as in a training step.
    """
    pairs = _named(modules, "layer_stats")
    with record_layers(pairs) as rec:
        loss = F.cross_entropy(model(x if isinstance(x, Tensor) else Tensor(x)), target)
        loss.backward()
    missing = [name for name, _ in pairs if name not in rec.grads]
    if missing:
        raise RuntimeError(f"layer_stats: no gradient reached the output of {missing}: were they called "
                           "in the forward pass, with parameters that require grad?")
    # A few numbers per layer: they come back to the CPU as NumPy floats.
    act_std = np.array([float(rec.outputs[name].std()) for name, _ in pairs])
    grad_norm = np.array([float(get_array_module(rec.grads[name]).linalg.norm(rec.grads[name].ravel()))
                          for name, _ in pairs])
    return LayerStats([name for name, _ in pairs], act_std, grad_norm, float(loss.item()))


def weight_grad_norms(model):
    """(names, norms): the L2 norm of ``.grad`` of every Conv2d and Linear weight, in the order
    the layers were registered (forward order for the ResNets). A weight without a gradient
    raises: run a backward first."""
    names, norms = [], []
    for name, m in model.named_modules():
        if isinstance(m, (Conv2d, Linear)):
            g = m.weight.grad
            if g is None:
                raise RuntimeError(f"weight_grad_norms: {name}.weight has no gradient; run backward() first")
            names.append(name)
            norms.append(float(get_array_module(g).linalg.norm(g.ravel())))
    return names, np.array(norms)


__all__ = ["Probe", "LayerRecord", "record_layers", "LayerStats", "layer_stats", "weight_grad_norms"]
