"""README's "Adding an op", followed step by step for a toy op, softplus, then gradient-checked.

Step 1 (the op and its function) is written here as README says to write it in minires/ops;
step 2 (its name in minires.functional) is done on a copy of the module's namespace, as the
two lines of functional.py would; step 3 is this file. The optional fast path is added too
and compared with the reference. A test of the README keeps the steps and this file in step.
"""
import re
import types
from pathlib import Path

import numpy as np
import pytest

import minires
import minires.functional as F
from minires import Function, Tensor
from minires.backend import get_array_module
from minires.engine import as_tensor
from opcheck import assert_close, check_grad, rng_for, tensor

README = Path(__file__).resolve().parents[1] / "README.md"


# ---------------------------------------------------------------- step 1: the op and its function

class Softplus(Function):
    """y = log(1 + exp(beta * x)) / beta;   dx = dy * sigmoid(beta * x)."""

    def __init__(self, beta):
        self.beta = beta

    def forward(self, x):
        xp = get_array_module(x)
        self.x = x
        return xp.logaddexp(0, self.beta * x) / self.beta

    def backward(self, gy):
        xp = get_array_module(gy)
        return gy / (1 + xp.exp(-self.beta * self.x)) if self.needs_input_grad[0] else None


def softplus(x, beta=1.0):
    """log(1 + exp(beta * x)) / beta elementwise, as ``torch.nn.functional.softplus``."""
    x = as_tensor(x)
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or beta <= 0:
        raise ValueError(f"softplus: beta must be a positive number, got {beta!r} (x shape {x.shape})")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"softplus: x must be floating point, got dtype {x.dtype} (shape {x.shape})")
    return Softplus(float(beta))(x)


# ---------------------------------------------------------------- step 2: its name in F

def functional_with(name, fn):
    """minires.functional as it reads after step 2 (``from .ops.<family> import name``, ``__all__``)."""
    module = types.ModuleType(F.__name__)
    module.__dict__.update(vars(F))
    setattr(module, name, fn)
    module.__all__ = [*F.__all__, name]
    return module


# ---------------------------------------------------------------- step 3: its test

def reference_softplus(x, beta):
    return np.log1p(np.exp(beta * x)) / beta


@pytest.mark.parametrize("beta", [1.0, 2.5])
def test_the_toy_op_matches_its_reference_and_gradchecks(device, beta):
    F2 = functional_with("softplus", softplus)
    x = rng_for(0).standard_normal((3, 4, 5))
    assert_close(F2.softplus(tensor(x, device), beta), reference_softplus(x, beta))
    check_grad(lambda t: F2.softplus(t, beta), [x], device)


def test_the_gradient_check_catches_a_wrong_backward():
    """The check can fail: the same op with the sigmoid's sign flipped is caught."""
    class Wrong(Softplus):
        def backward(self, gy):
            return gy / (1 + np.exp(self.beta * self.x))

    x = Tensor(rng_for(1).standard_normal((2, 3)), requires_grad=True)
    with pytest.raises(minires.GradcheckError):
        minires.gradcheck(lambda t: Wrong(1.0)(t), [x])


def test_the_toy_op_refuses_bad_input_by_name():
    with pytest.raises(ValueError, match=r"softplus: beta must be a positive number, got -1 \(x shape \(2,\)\)"):
        softplus(np.zeros(2), beta=-1)
    with pytest.raises(TypeError, match=r"softplus: x must be floating point, got dtype int64 \(shape \(2,\)\)"):
        softplus(np.zeros(2, dtype=np.int64))


def test_an_optional_fast_path_runs_instead_and_matches_the_reference():
    """The optional step: forward_cpu/backward_cpu calling a kernel; use_reference() runs the reference."""
    calls = []

    def softplus_kernel(x, beta):  # array in, array out: what a module in minires/cpu_kernels holds
        calls.append("kernel")
        return np.logaddexp(0, beta * x) / beta

    class FastSoftplus(Softplus):
        def forward_cpu(self, x):
            self.x = x
            return softplus_kernel(x, self.beta)

    x = rng_for(2).standard_normal((4, 3))
    with minires.use_reference(False):
        fast = FastSoftplus(1.5)(Tensor(x)).numpy()
    with minires.use_reference():
        ref = FastSoftplus(1.5)(Tensor(x)).numpy()
    assert calls == ["kernel"]
    np.testing.assert_allclose(fast, ref, rtol=1e-12)


def test_readme_lists_the_steps_this_file_follows():
    section = README.read_text().split("## Adding an op", 1)[1].split("\n## ", 1)[0]
    steps = re.findall(r"^\d\. \*\*(.+?)\*\*", section, flags=re.M)
    assert steps == ["The op", "Its name", "Its test"], steps
    for place in ("minires/ops/", "minires/functional.py", "__all__", "setup_tensor_methods", "needs_input_grad",
                  "check_grad", "tests/reference.py", "forward_cpu", "minires/cpu_kernels/", "use_reference"):
        assert place in section, place
