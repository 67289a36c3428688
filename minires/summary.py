"""``summary(model, input_shape)``: parameters, output shapes and multiply-adds, layer by layer.

How the "shape-only" pass works. Each layer that does real arithmetic (``Conv2d``,
``Linear``, ``BatchNorm2d``, pooling, ...) can say what shape its output has and how many
multiply-adds it costs *without computing anything*: ``output_shape(input_shape)`` and
``macs(input_shape)``. ``summary`` runs the model's ordinary ``forward`` on a placeholder
input, but every call of such a layer is intercepted: the layer is not run; a placeholder of
its output shape is returned instead (a zero-strided view of a single zero, so it takes no
memory). Everything else in ``forward`` (the residual additions, option A's subsampling and
zero padding, ``Sequential`` loops) runs as written, on those placeholders, so the summary
follows the real code path and cannot drift from it. ResNet-152 at 224x224 is summarised in
well under a second, with no convolution computed. The interception is summary's own: for the
pass, each module's ``forward`` is routed through it (and its forward hooks set aside), then
put back; ``Module.__call__`` knows nothing of it.

Multiply-adds count convolutions and fully connected layers, as the paper's Table 1 does
("FLOPs" there are multiply-adds): k*k*C_in per output value of a convolution, in_features
per output of a linear layer. Batch norm, ReLU, pooling and additions are not counted.
"""
import functools
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .backend import get_array_module
from .engine import Tensor, no_grad
from .nn.module import Module


class LayerRow:
    """One module call: its dotted name, type, output shape, parameters and multiply-adds."""

    __slots__ = ("name", "type", "depth", "output_shape", "params", "macs")

    def __init__(self, name, type_, depth, params):
        self.name, self.type, self.depth, self.params = name, type_, depth, params
        self.output_shape, self.macs = None, 0

    def __repr__(self):
        return (f"LayerRow({self.name!r}, {self.type}, output_shape={self.output_shape}, "
                f"params={self.params}, macs={self.macs})")


class Summary(Mapping):
    """What ``summary`` returns: a read-only mapping with keys ``'params'`` (total parameters),
    ``'macs'`` (total multiply-adds for the given input shape), ``'input_shape'``,
    ``'output_shape'`` and ``'rows'`` (a ``LayerRow`` per module call, in call order).
    ``str(s)`` (or ``print(s)``) is the per-layer table, showing rows nested at most ``depth``
    levels deep (all of them when ``depth`` is None)."""

    def __init__(self, model_name, params, macs, input_shape, output_shape, rows, depth):
        self._data = {"params": params, "macs": macs, "input_shape": input_shape,
                      "output_shape": output_shape, "rows": rows}
        self.model_name, self.depth = model_name, depth

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def table(self, depth=None):
        """The per-layer table as a string (``depth`` overrides the one given to ``summary``)."""
        depth = self.depth if depth is None else depth
        rows = [r for r in self["rows"] if depth is None or r.depth <= depth]
        head = ("Layer (type)", "Output shape", "Params", "Mult-adds")
        body = [("  " * (r.depth - 1) + f"{r.name} ({r.type})", str(r.output_shape), f"{r.params:,}", f"{r.macs:,}")
                for r in rows]
        widths = [max(len(line[i]) for line in [head] + body) for i in range(4)]

        def fmt(line):
            return (f"{line[0]:<{widths[0]}}  {line[1]:<{widths[1]}}  "
                    f"{line[2]:>{widths[2]}}  {line[3]:>{widths[3]}}")

        rule = "=" * len(fmt(head))
        return "\n".join(
            [f"{self.model_name} summary", rule, fmt(head), rule]
            + [fmt(line) for line in body]
            + [rule,
               f"Total params: {self['params']:,} ({_short(self['params'])})",
               f"Total mult-adds: {self['macs']:,} ({_short(self['macs'])})",
               f"Input shape: {self['input_shape']}   Output shape: {self['output_shape']}",
               rule]
        )

    def __str__(self):
        return self.table()

    __repr__ = __str__


def _short(n):
    """1234567 -> '1.23M' (the paper writes 0.27M parameters, 1.8 x 10^9 FLOPs = 1.8G)."""
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _placeholder(xp, shape, dtype):
    """A read-only array of ``shape`` that takes no memory: a zero-strided view of one zero."""
    return Tensor(xp.broadcast_to(xp.zeros((), dtype=dtype), shape))


def _shape_of(out):
    if not isinstance(out, Tensor):
        raise TypeError(f"summary: a module returned {type(out).__name__}; only single-Tensor outputs are supported")
    return out.shape


def summary(model, input_shape, depth=None):
    """Summarise ``model`` for an input of ``input_shape`` *including the batch dimension*,
    e.g. ``summary(cifar_resnet(20), (1, 3, 32, 32))``; multiply-adds are for that whole batch.

    Nothing is computed (see the module docstring); forward hooks are not called during the
    pass, since they would only see placeholders. Returns a ``Summary`` mapping with at
    least ``'params'`` and ``'macs'``; print it for the per-layer table (``depth`` limits how
    deeply nested the rows it shows are: 1 for stages, 2 for blocks, 3 for layers).
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary: model must be a minires.nn.Module, got {type(model).__name__}")
    if (not isinstance(input_shape, (tuple, list)) or not input_shape
            or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in input_shape)):
        raise ValueError(f"summary: input_shape must be a tuple of positive ints (with the batch dimension, "
                         f"e.g. (1, 3, 32, 32)), got {input_shape!r}")
    input_shape = tuple(int(s) for s in input_shape)
    params = list(model.parameters())
    xp = get_array_module(params[0].data) if params else np
    dtype = params[0].dtype if params else np.float32
    names = {id(m): name for name, m in model.named_modules()}
    rows, total = [], [0]  # total[0]: multiply-adds so far (leaf layers only)

    def trace(module, forward, *args, **kwargs):
        row = None
        if module is not model:  # the model itself is the "Total" line, not a row
            name = names.get(id(module), f"<unregistered {type(module).__name__}>")
            row = LayerRow(name, type(module).__name__, name.count(".") + 1,
                           sum(p.numel() for p in module.parameters()))
            rows.append(row)  # appended before the children run: parents come first in the table
        before = total[0]
        if hasattr(module, "output_shape"):  # a layer: its shape and cost, without running it
            in_shape = _shape_of(args[0])
            out_shape = tuple(module.output_shape(in_shape))
            total[0] += module.macs(in_shape) if hasattr(module, "macs") else 0
            out = _placeholder(xp, out_shape, args[0].dtype)
        else:  # a container or block: run its forward on the placeholders
            out = forward(*args, **kwargs)
        if row is not None:
            row.output_shape, row.macs = _shape_of(out), total[0] - before
        return out

    # Eval mode for the pass (stochastic depth must not draw random numbers), restored after.
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    restore = _route_forwards_through(model, trace)
    try:
        with no_grad():
            out = model(_placeholder(xp, input_shape, dtype))
    except (ValueError, TypeError) as e:
        raise type(e)(f"summary(input_shape={input_shape}): {e}") from e
    finally:
        restore()
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return Summary(type(model).__name__, sum(p.numel() for p in params), total[0], input_shape,
                   _shape_of(out), rows, depth)


def _route_forwards_through(model, trace):
    """Make every module's call run ``trace(module, its forward, *args)`` instead, with no forward
    hooks (they would only see placeholders). Returns the function that puts everything back.

    An instance attribute ``forward`` shadows the class's method for the pass; while it lasts,
    the model must not run elsewhere (another thread would see placeholders too).
    """
    saved = []
    for m in model.modules():
        saved.append((m, m.__dict__.get("forward"), m._forward_hooks))
        object.__setattr__(m, "forward", functools.partial(trace, m, m.forward))
        object.__setattr__(m, "_forward_hooks", OrderedDict())

    def restore():
        for m, forward, hooks in saved:
            if forward is None:
                del m.__dict__["forward"]
            else:
                object.__setattr__(m, "forward", forward)
            object.__setattr__(m, "_forward_hooks", hooks)
    return restore


__all__ = ["summary", "Summary", "LayerRow"]
