"""minires: a small, readable deep-learning framework on NumPy and CuPy that reproduces
"Deep Residual Learning for Image Recognition" (He, Zhang, Ren, Sun, 2015).

Layout, bottom to top: ``backend`` (NumPy or CuPy) -> ``engine`` (Tensor, autograd)
-> ``ops``/``functional`` (hand-written forward and backward) -> ``nn`` (modules)
-> ``models`` (ResNets) -> ``optim``, ``data``, ``train`` (the paper's recipe)
-> ``experiments`` (the paper's figures).
"""
from . import functional
from .backend import get_array_module, get_num_threads, gpu_available, set_num_threads
from .engine import Function, Tensor, is_grad_enabled, no_grad, tensor
from .gradcheck import GradcheckError, gradcheck
from . import models, nn  # they build on the engine above
from .summary import summary

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "Function", "no_grad", "is_grad_enabled", "gradcheck", "GradcheckError",
    "gpu_available", "get_array_module", "set_num_threads", "get_num_threads", "functional", "nn", "models", "summary",
]
