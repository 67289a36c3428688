"""minires: a small, readable deep-learning framework on NumPy and CuPy that reproduces
"Deep Residual Learning for Image Recognition" (He, Zhang, Ren, Sun, 2015).

Layout, bottom to top: ``backend`` (NumPy or CuPy), ``threads`` (CPU threads) and ``cpu_memory`` -> ``engine`` (Tensor, autograd)
-> ``ops`` (hand-written forward and backward, the reference; their CPU speed-ups in
``cpu_kernels``, their fused CuPy kernels in ``gpu_kernels``)
-> ``functional`` (the ops under PyTorch's names, attached to ``Tensor`` as operators)
-> ``nn`` (modules) -> ``models`` (ResNets) -> ``optim`` (SGD, lr schedules), ``data``
(CIFAR-10 files, transforms, loader) and ``checkpoint`` -> ``config``, ``step`` (one training
step), ``train`` (the loop and ``python -m minires.train``), ``rundir`` -> ``experiments`` (the paper's
figures). ``_checks`` holds the argument checks every layer shares. Beside the path: ``distributed``
(data parallel over MPI), ``cuda_graph`` (a training step replayed as a CUDA graph), ``graph``
(drawing the autograd graph), ``probes`` and ``landscape`` (measurements for the notebooks),
``exercises`` (the notebooks' exercise checks).
"""
from .backend import get_array_module, gpu_available
from .threads import get_num_threads, set_num_threads
from .engine import Function, Tensor, is_grad_enabled, is_reference, no_grad, tensor, use_reference
from . import functional
functional.setup_tensor_methods()  # x + y, x.sum(), ...: the engine itself never imports the ops
from .ops.conv import use_algorithm
from .gradcheck import GradcheckError, gradcheck
from . import data, models, nn, optim  # they build on the engine above
from .summary import summary

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "Function", "no_grad", "is_grad_enabled", "use_reference", "is_reference", "use_algorithm",
    "gradcheck",
    "GradcheckError",
    "gpu_available", "get_array_module", "set_num_threads", "get_num_threads", "functional", "nn", "models",
    "optim", "data", "summary",
]
