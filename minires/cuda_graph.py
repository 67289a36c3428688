"""A whole training step captured once as a CUDA graph and replayed: no launch overhead.

On the GPU a CIFAR ResNet step at batch 128 is hundreds of small kernels (ResNet-20: about
900 forward, backward and SGD launches), each a few microseconds of arithmetic behind tens of
microseconds of Python and launch cost. CUDA graphs record the launches of one step once
(stream capture) and replay them with a single call, so the GPU runs them back to back.

What a replay can and cannot do, and how this module keeps to it:

* Every replay reads and writes the same addresses. The batch is copied into static input
  arrays; the parameters, momentum buffers and batch-norm statistics are updated in place
  (they already are); the loss and error count come out in static arrays.
* Nothing on the host runs during a replay. Anything the step decides in Python is frozen at
  capture: so the learning rate is part of a graph's key (a new lr, at a milestone or when
  the warm-up ends, captures a new graph: a few per run), stochastic depth is refused, and
  targets are range-checked here, on the host side, before they are copied in (``F.cross_entropy``
  skips its own check, which would synchronise, while the stream is capturing).
* Memory allocated during capture comes from a private memory pool that nothing else uses,
  so a later eager allocation can never be handed a block that the graph writes to.
* The first ``warmup`` calls run eagerly: they are real steps, and they create the momentum
  buffers and compile the kernels before anything is captured.

``python -m minires.train --device gpu --cuda-graph`` trains with it; ``benchmarks/train_step.py
--cuda-graph`` times it.
"""
from .backend import device_of
from .engine import Tensor
from .step import train_step


class CUDAGraphStep:
    """``step = CUDAGraphStep(model, optimizer)``; ``loss, errors = step(x, y)``.

    One SGD step of ``model`` on the batch ``x`` (CuPy, float, N×C×H×W) with integer class
    targets ``y`` (CuPy, (N,)): zero the gradients, cross-entropy of the logits, backward,
    ``optimizer.step()``. Returns the mean loss and the number of misclassified images as
    0-d CuPy arrays, valid until the next call. The model must be in training mode, on the
    GPU, and free of host-side randomness (no stochastic depth).
    """

    def __init__(self, model, optimizer, warmup=2):
        if warmup < 1:
            raise ValueError(f"CUDAGraphStep: warmup must be >= 1 (eager steps before capture), got {warmup}")
        params = list(model.parameters())
        if not params or any(p.device != "gpu" for p in params):
            raise RuntimeError("CUDAGraphStep: the model must be on the GPU (model.to('gpu')) before capture")
        random = [name for name, m in model.named_modules() if getattr(m, "drop_prob", 0)]
        if random:
            raise ValueError(
                f"CUDAGraphStep: {random[0]} drops its branch at random on the host (stochastic depth), which a "
                "replayed graph cannot do; train it without --cuda-graph")
        import cupy as cp

        self.model, self.optimizer, self.warmup = model, optimizer, warmup
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.pool = cp.cuda.MemoryPool()
        self.eager_steps = 0
        self.graphs = {}  # key -> (graph, static x, static y, loss, errors)

    def __call__(self, x, y):
        import cupy as cp

        self._check_batch(x, y)
        if self.eager_steps < self.warmup:
            self.eager_steps += 1
            return self._step(Tensor(x), y)
        key = (x.shape, x.dtype.str, tuple(g["lr"] for g in self.optimizer.param_groups))
        if key not in self.graphs:
            self.graphs[key] = self._capture(x, y)
        graph, static_x, static_y, loss, errors = self.graphs[key]
        caller = cp.cuda.get_current_stream()
        self.stream.wait_event(caller.record())  # the batch (and earlier work) is ready
        with self.stream:
            static_x[...] = x
            static_y[...] = y
            graph.launch(stream=self.stream)
        caller.wait_event(self.stream.record())  # the caller reads the results after the replay
        return loss, errors

    def _step(self, x, y):
        """The eager step, also what capture records: ``minires.step.train_step``, the Trainer's."""
        return train_step(self.model, self.optimizer, x, y)

    def _capture(self, x, y):
        import cupy as cp

        static_x, static_y = x.copy(), y.copy()  # allocated outside the graph's pool: inputs live on
        self.stream.wait_event(cp.cuda.get_current_stream().record())
        with self.stream, cp.cuda.using_allocator(self.pool.malloc):
            self.stream.begin_capture()
            try:
                loss, errors = self._step(Tensor(static_x), static_y)
            except BaseException as exc:
                try:
                    self.stream.end_capture()
                except Exception:
                    pass  # the capture is already invalid; the original error says why
                raise RuntimeError(f"CUDAGraphStep: capturing the training step failed: {exc}") from exc
            graph = self.stream.end_capture()
        return graph, static_x, static_y, loss, errors

    def _check_batch(self, x, y):
        if device_of(x) != "gpu" or device_of(y) != "gpu":
            raise RuntimeError(f"CUDAGraphStep: x and y must be CuPy arrays, got x on {device_of(x)}, y on {device_of(y)}")
        if x.ndim != 4 or y.shape != x.shape[:1] or y.dtype.kind not in "iu":
            raise ValueError(f"CUDAGraphStep: expected x (N, C, H, W) and integer y (N,), got x {x.shape}, y {y.shape} {y.dtype}")
        classes = None
        for m in self.model.modules():
            classes = getattr(m, "out_features", classes)  # the last Linear: the classifier
        # One small reduction and one synchronisation, between steps: a replay would gather
        # out of bounds where the eager cross_entropy raises.
        if classes is not None and bool(((y < 0) | (y >= classes)).any()):
            raise ValueError(f"CUDAGraphStep: targets must be in [0, {classes - 1}], got min {int(y.min())} "
                             f"and max {int(y.max())}")
