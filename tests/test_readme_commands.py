"""Every command line in README.md's ```bash blocks runs, on a tiny budget, so that a documented
option cannot break unnoticed.

The commands run in order, as a reader would type them, in a scratch copy of the layout CI uses
(the repository beside ``shared/``, so ``../shared/data/cifar-10-sample`` resolves), each as its
own ``python -m ...`` process. What is changed to keep them short is only the budget and the size
of the nets: ``--epochs N`` becomes 1 (2 for a ``--resume``, which must extend the run), a
command without a budget gets ``--iterations 2``, and training commands get a narrow net
(``--width 4``), a few images (``--train-limit 64 --batch-size 32``) and no progress bar. The
default data directory is pointed at the CIFAR-10 sample, so nothing is downloaded.
"""
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minires.backend import gpu_available

REPO = Path(__file__).resolve().parents[1]


def find_sample():
    """The CIFAR-10 sample: $MINIRES_CIFAR_SAMPLE, else shared/data/cifar-10-sample beside the
    repository or beside any folder above it (a worktree sits deeper than a clone)."""
    if os.environ.get("MINIRES_CIFAR_SAMPLE"):
        return Path(os.environ["MINIRES_CIFAR_SAMPLE"])
    for parent in REPO.parents:
        candidate = parent / "shared" / "data" / "cifar-10-sample"
        if candidate.is_dir():
            return candidate
    return None


SAMPLE = find_sample()


def readme_commands(text):
    """The command lines of the ```bash blocks, in order (comments and blank lines dropped)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


COMMANDS = readme_commands((REPO / "README.md").read_text())
TINY_NET = ["--width", "4", "--train-limit", "64", "--batch-size", "32", "--no-progress"]


def split_env(words):
    """Leading ``NAME=value`` words (as a shell takes them) -> ({NAME: value}, the command)."""
    env = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        name, value = words[0].split("=", 1)
        env[name], words = value, words[1:]
    return env, words


def why_skipped(words):
    """The reason this command is not run here, or None."""
    words = split_env(words)[1]
    if words[0] == "pip":
        return "installs the package; CI runs this very line itself (.ci/run)"
    if words[:4] == ["python", "-m", "pytest", "-q"] or words[:3] == ["python", "-m", "pytest"]:
        return "is this test suite itself"
    if words[0] == "mpiexec" and (shutil.which("mpiexec") is None or _missing("mpi4py")):
        return "needs mpiexec and mpi4py"
    if any("gpu" in w for w in words) and not gpu_available():  # --device gpu, gpu_check.sh, ...
        return "needs a GPU (CuPy and a CUDA device)"
    if SAMPLE is None and "--help" not in words:
        return "the CIFAR-10 sample (shared/data/cifar-10-sample beside the repository) is not there"
    return None


def _missing(module):
    try:
        __import__(module)
    except ImportError:
        return True
    return False


def shrink(words, cwd):
    """The command with a tiny budget (see the module docstring); globs expanded in ``cwd``.
    Commands other than ``python -m minires...`` run as written."""
    expanded = []
    for w in words:
        expanded += (sorted(glob.glob(w, root_dir=cwd)) if "*" in w else []) or [w]
    words = expanded
    module = next((w for w in words if w.startswith("minires.")), None)
    if "--help" in words or module is None:
        return words
    training = module in ("minires.train", "minires.experiments.degradation")
    if training and "--eval-only" not in words:
        resume = "--resume" in words
        if "--epochs" in words:
            i = words.index("--epochs")
            words[i + 1] = "2" if resume else "1"
        elif "--iterations" not in words and not resume:
            words += ["--epochs", "1"] if module != "minires.train" else ["--iterations", "2"]
        words += TINY_NET
        if module == "minires.experiments.degradation" and "--jobs" not in words:
            words += ["--jobs", "1"]  # one process: the suite runs on 2 cores
    if module == "minires.experiments.responses":
        words += ["--images", "50"]
    return words


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder laid out as CI's: <root>/repo (the working directory) beside <root>/shared."""
    root = tmp_path_factory.mktemp("readme")
    (root / "repo").mkdir()
    if SAMPLE is not None:
        (root / "shared" / "data").mkdir(parents=True)
        (root / "shared" / "data" / "cifar-10-sample").symlink_to(SAMPLE)
    return root / "repo"


def test_readme_has_the_documented_commands():
    modules = {w for words in COMMANDS for w in words if w.startswith("minires.")}
    assert {"minires.train", "minires.experiments.degradation", "minires.experiments.responses"} <= modules
    assert any("--eval-only" in words for words in COMMANDS)


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w) for w in COMMANDS])
def test_readme_command_runs(words, workspace):
    reason = why_skipped(words)
    if reason:
        pytest.skip(f"{' '.join(words)}: {reason}")
    assignments, words = split_env(words)
    command = [sys.executable if w == "python" else w for w in shrink(words, workspace)]
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg", **assignments)
    if SAMPLE is not None:
        env["MINIRES_DATA_DIR"] = str(SAMPLE)  # the default data directory: no download
    done = subprocess.run(command, cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (
        f"README command failed ({done.returncode}): {' '.join(words)}\nran as: {' '.join(command)}\n"
        f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}")
