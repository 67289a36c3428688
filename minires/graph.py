"""Pictures of the computation graph behind a tensor: ``trace``, ``draw_graph``, ``to_dot``.

The graph is what the engine records (``tensor.grad_fn``, ``fn.inputs``): tensors and the ops
(``Function`` objects) that made them. ``trace(y)`` extracts it as plain data; ``draw_graph(y)``
draws it with matplotlib only (ops as orange boxes, tensors with their shapes, parameters green,
constants grey, inputs at the top, the output at the bottom); ``to_dot(y)`` writes the same graph
as Graphviz DOT text, for ``dot -Tsvg`` where Graphviz is installed (minires never needs it).

A tensor used by two ops has two outgoing edges: the fan-out of a residual block's input
(branch and shortcut) is visible, and its gradient is the sum over them (notebook 01).
Draw before ``backward()``: backward frees the graph (unless ``retain_graph=True``).
"""
from dataclasses import dataclass, field

from .engine import Tensor


@dataclass
class Node:
    """One node: ``kind`` is ``"op"``, ``"tensor"`` (made by an op), ``"param"`` (a leaf that
    requires grad: a parameter, or an input whose gradient is wanted), ``"input"`` (a leaf
    without grad) or ``"const"`` (a one-element such leaf, shown by its value)."""

    key: str
    kind: str
    label: str
    shape: tuple = None


@dataclass
class Graph:
    """``nodes`` in discovery order from the output; ``edges`` as (source key, target key), data
    flowing from source to target (tensor -> op that reads it, op -> tensor it makes)."""

    nodes: list = field(default_factory=list)
    edges: list = field(default_factory=list)
    output: str = None

    def node(self, key):
        return next(n for n in self.nodes if n.key == key)

    def successors(self, key):
        return [b for a, b in self.edges if a == key]

    def predecessors(self, key):
        return [a for a, b in self.edges if b == key]


def _shape_text(shape):
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def trace(output, names=None):
    """The graph that made ``output`` (a Tensor), as a ``Graph``.

    ``names`` maps a name to a tensor ({"x": x, **dict(block.named_parameters())}); named
    tensors show their name above their shape. Walks ``grad_fn``/``inputs`` with an explicit stack.
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"trace: output must be a Tensor, got {type(output).__name__}")
    named = {id(t): name for name, t in (names or {}).items()}
    graph = Graph()
    keys = {}  # id(tensor or op) -> node key

    def add_tensor(t):
        if id(t) in keys:
            return keys[id(t)], False
        key = keys[id(t)] = f"t{len(keys)}"
        if t._ctx is not None:
            kind = "tensor"
        elif t.requires_grad:
            kind = "param"
        else:
            kind = "const" if t.size == 1 and id(t) not in named else "input"
        label = named.get(id(t), f"{t.item():g}" if kind == "const" else "")
        graph.nodes.append(Node(key, kind, label, t.shape))
        return key, True

    graph.output, _ = add_tensor(output)
    stack = [output]
    while stack:
        t = stack.pop()
        fn = t._ctx
        if fn is None:
            continue
        if fn.freed:
            raise RuntimeError("trace: the graph was freed by backward(); draw it before calling backward(), "
                               "or call backward(retain_graph=True)")
        op_key = keys[id(fn)] = f"op{len(keys)}"
        graph.nodes.append(Node(op_key, "op", type(fn).__name__))
        graph.edges.append((op_key, keys[id(t)]))
        for inp in fn.inputs:
            if inp is None:
                continue
            key, new = add_tensor(inp)
            graph.edges.append((key, op_key))
            if new:
                stack.append(inp)
    return graph


def _layers(graph):
    """Each node's layer: the longest path from it to the output (so inputs sit at the top and
    an edge always points down), then the nodes of each layer ordered to limit crossings."""
    consumers = {n.key: graph.successors(n.key) for n in graph.nodes}
    rank = {}
    # Longest path to the output: repeat relaxations until stable (graphs here are small, a DAG).
    pending = [n.key for n in graph.nodes]
    while pending:
        still = []
        for key in pending:
            outs = consumers[key]
            if all(o in rank for o in outs):
                rank[key] = 1 + max((rank[o] for o in outs), default=-1)
            else:
                still.append(key)
        if len(still) == len(pending):
            raise ValueError("trace: the graph has a cycle")  # cannot happen for a recorded graph
        pending = still
    depth = max(rank.values())
    layers = [[] for _ in range(depth + 1)]
    for n in graph.nodes:  # discovery order: a reasonable first order within each layer
        layers[depth - rank[n.key]].append(n.key)
    # Barycenter sweeps: sort each layer by the mean position of its neighbours in the layer
    # just placed (down, then up), the classic heuristic for fewer crossings.
    pos = {k: i - (len(layer) - 1) / 2 for layer in layers for i, k in enumerate(layer)}
    for _ in range(4):
        for sweep in (range(1, len(layers)), range(len(layers) - 2, -1, -1)):
            for li in sweep:
                def centre(k):
                    near = graph.predecessors(k) + graph.successors(k)
                    return sum(pos[j] for j in near) / len(near) if near else pos[k]
                layers[li].sort(key=centre)
                pos.update({k: i - (len(layers[li]) - 1) / 2 for i, k in enumerate(layers[li])})
    return layers, pos


_STYLE = {  # kind -> (face colour, edge colour, line style)
    "op": ("#fdd9a8", "#c46c00", "solid"),
    "tensor": ("#dbe9f6", "#3a6ea5", "solid"),
    "param": ("#d5efd0", "#3c8a2e", "solid"),
    "input": ("#dbe9f6", "#3a6ea5", "solid"),
    "const": ("#eeeeee", "#888888", "dashed"),
}


def _text(node):
    if node.kind == "op":
        return node.label
    if node.kind == "const":
        return node.label
    shape = _shape_text(node.shape)
    return f"{node.label}\n{shape}" if node.label else shape


def draw_graph(output, names=None, ax=None, title=None, fontsize=8):
    """Draw the graph that made ``output`` with matplotlib; returns the Axes.

    Ops are orange boxes; tensors show their shape (and name, from ``names`` as in ``trace``);
    parameters are green, constants grey and dashed. Inputs sit at the top, the output at the
    bottom; an edge that skips layers (a shortcut) is drawn as an arc.
    """
    import matplotlib.pyplot as plt

    graph = trace(output, names)
    layers, pos = _layers(graph)
    width = max(len(layer) for layer in layers)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 1.9 * width + 1), 0.62 * len(layers) + 0.6))
    xy = {k: (pos[k] * 1.9, -li) for li, layer in enumerate(layers) for k in layer}
    artists = {}
    for node in graph.nodes:
        face, edge, style = _STYLE[node.kind]
        box = "round,pad=0.35" if node.kind == "op" else "square,pad=0.3"
        weight = "bold" if node.kind == "op" or node.key == graph.output else "normal"
        artists[node.key] = ax.text(*xy[node.key], _text(node), ha="center", va="center", fontsize=fontsize,
                                    fontweight=weight, zorder=3,
                                    bbox=dict(boxstyle=box, facecolor=face, edgecolor=edge, linestyle=style))
    for a, b in graph.edges:
        skip = xy[a][1] - xy[b][1]  # layers crossed: more than one means the edge passes other nodes
        ax.annotate("", xy=(0.5, 1.0), xycoords=artists[b], xytext=(0.5, 0.0), textcoords=artists[a], zorder=2,
                    arrowprops=dict(arrowstyle="-|>", color="#555555", lw=1.0, shrinkA=4, shrinkB=4,
                                    connectionstyle=f"arc3,rad={0.35 if skip > 1 else 0.0}"))
    xs = [p[0] for p in xy.values()]
    ax.set_xlim(min(xs) - 1.3, max(xs) + 1.3)
    ax.set_ylim(-len(layers) + 0.4, 0.6)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=fontsize + 2)
    return ax


def to_dot(output, names=None):
    """The graph that made ``output`` as Graphviz DOT text (render with ``dot -Tsvg`` if installed)."""
    graph = trace(output, names)
    shapes = {"op": "box", "tensor": "ellipse", "param": "ellipse", "input": "ellipse", "const": "plaintext"}
    lines = ["digraph minires {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
    for node in graph.nodes:
        face, edge, style = _STYLE[node.kind]
        label = _text(node).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        extra = ', style="rounded,filled"' if node.kind == "op" else f', style="filled,{style}"'
        lines.append(f'  {node.key} [label="{label}", shape={shapes[node.kind]}, fillcolor="{face}", '
                     f'color="{edge}"{extra}];')
    lines += [f"  {a} -> {b};" for a, b in graph.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"
