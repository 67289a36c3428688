"""``minires.cuda_graph.CUDAGraphStep``: a replayed training step equals the eager one.

The GPU tests compare parameters, batch-norm statistics and losses of two identical nets after
the same steps, one eager, one through captured graphs (with an lr change in between, which
must capture a second graph). Without a GPU only the input checks run.
"""
import numpy as np
import pytest

import minires.functional as F
from minires import Tensor, gpu_available
from minires.backend import to_device, to_numpy
from minires.cuda_graph import CUDAGraphStep
from minires.models import cifar_resnet
from minires.optim import SGD

def make(seed=0, **kw):
    return cifar_resnet(8, seed=seed, **kw)


def test_refuses_a_model_on_the_cpu():
    model = make()
    with pytest.raises(RuntimeError, match="must be on the GPU"):
        CUDAGraphStep(model, SGD(model.parameters(), lr=0.1))


def test_refuses_bad_warmup():
    model = make()
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        CUDAGraphStep(model, SGD(model.parameters(), lr=0.1), warmup=0)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="no GPU: CuPy is not installed or no CUDA device answers")
def test_replay_matches_eager_steps():
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((32, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 32)) for _ in range(7)]
    nets = []
    for graphed in (False, True):
        model = make(seed=3).to("gpu")
        model.train()
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        step = CUDAGraphStep(model, opt, warmup=2) if graphed else None
        losses = []
        for i, (x, y) in enumerate(batches):
            if i == 4:
                for g in opt.param_groups:
                    g["lr"] = 0.01  # a milestone: the graph path must capture again
            xb, yb = to_device(x, "gpu"), to_device(y, "gpu")
            if graphed:
                loss, errors = step(xb, yb)
            else:
                opt.zero_grad()
                logits = model(Tensor(xb))
                out = F.cross_entropy(logits, yb)
                out.backward()
                opt.step()
                loss, errors = out.data, (logits.data.argmax(axis=1) != yb).sum()
            losses.append((float(loss), int(errors)))
        nets.append((model, losses, step))
    (eager, eager_losses, _), (graphed, graph_losses, step) = nets
    assert len(step.graphs) == 2, "one graph per lr"
    np.testing.assert_allclose([l for l, _ in graph_losses], [l for l, _ in eager_losses], rtol=1e-5)
    assert [e for _, e in graph_losses] == [e for _, e in eager_losses]
    for (name, a), (_, b) in zip(eager.state_dict().items(), graphed.state_dict().items()):
        np.testing.assert_allclose(to_numpy(b), to_numpy(a), rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="no GPU: CuPy is not installed or no CUDA device answers")
def test_bad_targets_and_stochastic_depth_are_refused():
    model = make().to("gpu")
    step = CUDAGraphStep(model, SGD(model.parameters(), lr=0.1), warmup=1)
    x = to_device(np.zeros((4, 3, 32, 32), np.float32), "gpu")
    with pytest.raises(ValueError, match=r"targets must be in \[0, 9\]"):
        step(x, to_device(np.array([0, 1, 2, 10]), "gpu"))
    deep = cifar_resnet(8, stochastic_depth=0.5, seed=0).to("gpu")
    with pytest.raises(ValueError, match="stochastic depth"):
        CUDAGraphStep(deep, SGD(deep.parameters(), lr=0.1))
