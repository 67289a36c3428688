"""Shared fixtures: the ``device`` fixture runs a test on NumPy and, when a GPU answers, on CuPy."""
import os

import pytest
from hypothesis import HealthCheck, settings

from minires import gpu_available

# Gradient checks are slow per example; a fixed, modest budget keeps the suite fast and stable.
settings.register_profile(
    "minires", max_examples=int(os.environ.get("MINIRES_HYPOTHESIS_EXAMPLES", "20")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("minires")

GPU_SKIP_REASON = "no GPU: CuPy is not installed or no CUDA device answers"

DEVICES = [
    "cpu",
    pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason=GPU_SKIP_REASON)]),
]


@pytest.fixture(params=DEVICES)
def device(request):
    """'cpu' or 'gpu': move inputs with ``Tensor(...).to(device)`` or ``minires.backend.to_device``."""
    return request.param


@pytest.fixture(autouse=True)
def learner_mode(monkeypatch):
    """Exercise checks return their result, as in the learner's notebook; they do not raise as in
    CI's run of the notebooks with the solutions (MINIRES_EXERCISES=solutions)."""
    monkeypatch.delenv("MINIRES_EXERCISES", raising=False)
