"""minires.graph: the graph it extracts (nodes, edges, the fan-out), its DOT text, and its picture."""
import shutil
import subprocess
from collections import Counter

import numpy as np
import pytest

import minires
from minires import Tensor
from minires.graph import draw_graph, to_dot, trace
from minires.models.blocks import BasicBlock


def one_neuron():
    x = Tensor(np.array([1.0, -2.0, 3.0]))
    w = Tensor(np.array([0.5, -1.0, 0.25]), requires_grad=True)
    b = Tensor(np.array(0.1), requires_grad=True)
    loss = ((w * x).sum() + b).relu() ** 2
    return loss, {"x": x, "w": w, "b": b, "L": loss}


def by_label(graph, label):
    found = [n for n in graph.nodes if n.label == label]
    assert len(found) == 1, (label, found)
    return found[0]


def test_trace_of_a_small_expression():
    loss, names = one_neuron()
    g = trace(loss, names)
    ops = [n.label for n in g.nodes if n.kind == "op"]
    assert sorted(ops) == ["Add", "Mul", "Pow", "ReLU", "Sum"]
    assert Counter(n.kind for n in g.nodes) == {"op": 5, "tensor": 5, "param": 2, "input": 1, "const": 1}
    # each op: one edge to its output, one from each input (Mul 2, Sum 1, Add 2, ReLU 1, Pow 2)
    assert len(g.edges) == 5 + 8
    assert len({n.key for n in g.nodes}) == len(g.nodes)
    assert g.output == by_label(g, "L").key
    mul = by_label(g, "Mul").key
    assert sorted(g.node(k).label for k in g.predecessors(mul)) == ["w", "x"]
    assert by_label(g, "2").kind == "const" and by_label(g, "w").shape == (3,)
    for a, b in g.edges:  # edges alternate tensor -> op -> tensor
        assert (g.node(a).kind == "op") != (g.node(b).kind == "op")


def test_fan_out_is_one_node_with_two_edges():
    x = Tensor(np.array([-1.0, 2.0, 3.0]), requires_grad=True)
    y = (x * 0.5).relu() + x
    g = trace(y, {"x": x})
    x_node = by_label(g, "x")
    assert sorted(g.node(k).label for k in g.successors(x_node.key)) == ["Add", "Mul"]


def test_residual_block_graph():
    block = BasicBlock(4, 4)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32), requires_grad=True)
    y = block(x)
    g = trace(y, {"x": x, **dict(block.named_parameters())})
    assert Counter(n.label for n in g.nodes if n.kind == "op") == {"Conv2d": 2, "BatchNorm": 2, "ReLU": 2, "Add": 1}
    assert sorted(g.node(k).label for k in g.successors(by_label(g, "x").key)) == ["Add", "Conv2d"]
    assert {n.label for n in g.nodes if n.kind == "param"} == {"x"} | {n for n, _ in block.named_parameters()}
    assert by_label(g, "conv1.weight").shape == (4, 4, 3, 3)


def test_trace_refuses_a_freed_graph_and_a_non_tensor():
    loss, _ = one_neuron()
    loss.backward()
    with pytest.raises(RuntimeError, match="freed by backward"):
        trace(loss)
    with pytest.raises(TypeError, match="trace: output must be a Tensor"):
        trace(np.ones(3))


def test_trace_of_a_leaf_and_of_a_deep_chain():
    leaf = Tensor(np.ones(2), requires_grad=True)
    g = trace(leaf)
    assert [n.kind for n in g.nodes] == ["param"] and g.edges == []
    t = leaf
    for _ in range(2000):  # deeper than Python's recursion limit: the walk is a loop
        t = t * 1.0
    assert Counter(n.kind for n in trace(t).nodes)["op"] == 2000


def test_to_dot():
    loss, names = one_neuron()
    g = trace(loss, names)
    names['say "hi"'] = names.pop("x")  # a quote in a label must be escaped
    text = to_dot(loss, names)
    lines = text.splitlines()
    assert lines[0] == "digraph minires {" and lines[-1] == "}"
    assert sum("->" in line for line in lines) == len(g.edges)
    assert sum("[label=" in line for line in lines) == len(g.nodes)
    assert 'label="say \\"hi\\"\\n(3,)"' in text
    assert text.count("shape=box") == 5


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (optional)")
def test_dot_renders():
    loss, names = one_neuron()
    svg = subprocess.run(["dot", "-Tsvg"], input=to_dot(loss, names), capture_output=True, text=True, check=True)
    assert "<svg" in svg.stdout


def test_draw_graph_places_inputs_above_outputs():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    block = BasicBlock(2, 2)
    x = Tensor(np.random.default_rng(1).standard_normal((2, 2, 4, 4)).astype(np.float32), requires_grad=True)
    y = block(x)
    names = {"x": x, "y": y, **dict(block.named_parameters())}
    ax = draw_graph(y, names=names, title="block")
    g = trace(y, names)
    texts = [t for t in ax.texts if t.get_text()]
    assert len(texts) == len(g.nodes)
    assert len([c for c in ax.texts if not c.get_text()]) == len(g.edges)  # one arrow annotation per edge
    where = {t.get_text(): t.get_position() for t in texts}
    assert where["x\n(2, 2, 4, 4)"][1] > where["Conv2d"][1] > where["Add"][1] > where["y\n(2, 2, 4, 4)"][1]
    assert ax.get_title() == "block"
    plt.close(ax.figure)
    assert minires.graph is not None
