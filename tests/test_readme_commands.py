"""Every command line in README.md's ```bash blocks runs, on a tiny budget, so that a documented
option cannot break unnoticed.

The commands run in order, as a reader would type them, in a scratch folder with nothing beside it,
each as its own ``python -m ...`` process. What is changed to keep them short is only the budget,
the size of the nets and the data: ``--epochs N`` becomes 1 (2 for a ``--resume``, which must extend
the run), a command without a budget gets ``--iterations 2``, and training commands get a narrow net
(``--width 4``), a few images (``--train-limit 64 --batch-size 32``) and no progress bar. The data
is genuine CIFAR-10 where ``$MINIRES_DATA_DIR`` points at it, else a tiny archive in the official
format generated for the test (tests/cifar_archive.py), with ``--subset`` shrunk to fit it; either
way ``$MINIRES_DATA_DIR`` tells the commands where it is, ``--data-dir`` values are swapped for it,
and nothing is downloaded.
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

from cifar_archive import PER_BATCH, TEST_IMAGES
from conftest import GENUINE_DATA

REPO = Path(__file__).resolve().parents[1]
#: --subset for the generated archive (5 x PER_BATCH training, TEST_IMAGES test images).
TINY_SUBSET = [str(2 * PER_BATCH), str(TEST_IMAGES // 2)]


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
    if words[0] == "pip" or words[:3] == ["python3", "-m", "venv"]:
        return "sets up the environment; CI runs the README's set-up lines themselves (.ci/run)"
    if words[:4] == ["python", "-m", "pytest", "-q"] or words[:3] == ["python", "-m", "pytest"]:
        return "is this test suite itself"
    if words[0] == "mpiexec" and (shutil.which("mpiexec") is None or _missing("mpi4py")):
        return "needs mpiexec and mpi4py"
    if any("gpu" in w for w in words) and not gpu_available():  # --device gpu, gpu_check.sh, ...
        return "needs a GPU (CuPy and a CUDA device)"
    return None


def has_a_test(words):
    """True when this suite knows how to run (or why it skips) the command."""
    words = split_env(words)[1]
    module = next((w for w in words if w.startswith("minires.")), None)
    return why_skipped(words) is not None or (words[0] in ("python", "mpiexec") and module is not None)


def _missing(module):
    try:
        __import__(module)
    except ImportError:
        return True
    return False


def shrink(words, cwd, data):
    """The command with a tiny budget and the test's data (see the module docstring); globs
    expanded in ``cwd``. Commands other than ``python -m minires...`` run as written."""
    expanded = []
    for w in words:
        expanded += (sorted(glob.glob(w, root_dir=cwd)) if "*" in w else []) or [w]
    words = expanded
    module = next((w for w in words if w.startswith("minires.")), None)
    if "--help" in words or module is None:
        return words
    if "--data-dir" in words:
        words[words.index("--data-dir") + 1] = str(data)
    if GENUINE_DATA is None and "--subset" in words:
        i = words.index("--subset")
        words[i + 1:i + 3] = TINY_SUBSET
    training = module in ("minires.train", "minires.experiments.degradation")
    if training and "--eval-only" not in words:
        resume = "--resume" in words
        if "--epochs" in words:
            i = words.index("--epochs")
            words[i + 1] = "2" if resume else "1"
        elif "--iterations" not in words and not resume:
            words += ["--epochs", "1"] if module != "minires.train" else ["--iterations", "2"]
        words += TINY_NET
        if module == "minires.experiments.degradation":
            if "--jobs" not in words:
                words += ["--jobs", "1"]  # one process: the suite runs on 2 cores
            if GENUINE_DATA is None and "--subset" not in words and "--dataset" not in words:
                words += ["--subset", *TINY_SUBSET]  # the presets' 4,000 images are not in the tiny archive
    if module == "minires.experiments.responses":
        words += ["--images", "50"]
    return words


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, cifar_archive):
    """(a scratch working directory with nothing beside it, the data the commands use)."""
    root = tmp_path_factory.mktemp("readme")
    (root / "work").mkdir()
    return root / "work", GENUINE_DATA or cifar_archive[0]


def test_readme_has_the_documented_commands():
    modules = {w for words in COMMANDS for w in words if w.startswith("minires.")}
    assert {"minires.train", "minires.experiments.degradation", "minires.experiments.responses"} <= modules
    assert any("--eval-only" in words for words in COMMANDS)


def test_every_readme_command_has_a_test():
    untested = [" ".join(words) for words in COMMANDS if not has_a_test(words)]
    assert not untested, f"README commands this suite neither runs nor skips with a reason: {untested}"


#: Anything that names a folder outside the repository, by any spelling (.ci/run alone may).
BESIDE = re.compile(r"\.\./shared|shared/data|[\"']shared[\"'],\s*[\"']data|cifar-10-sample|MINIRES_CIFAR_SAMPLE")


def product_files():
    """README.md and the text files of minires/, notebooks/, docs/ and benchmarks/, as (name, text)."""
    files = [REPO / "README.md"] + [p for d in ("minires", "notebooks", "docs", "benchmarks")
                                     for p in sorted((REPO / d).rglob("*")) if p.is_file()
                                     and p.suffix in (".py", ".md", ".ipynb", ".json", ".sh", ".txt", ".csv", ".jsonl")]
    return [(str(p.relative_to(REPO)), p.read_text(errors="replace")) for p in files]


def beside(files):
    return [f"{name}: {m.group(0)}" for name, text in files for m in BESIDE.finditer(text)]


def test_nothing_names_a_folder_beside_the_repository():
    """The product finds data through minires.data alone: README.md, minires/, notebooks/, docs/ and
    benchmarks/ name no folder outside the repository, the committed evidence and notebooks' outputs included."""
    files = product_files()
    assert not beside(files), beside(files)[:10]


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(w) for w in COMMANDS])
def test_readme_command_runs(words, workspace):
    reason = why_skipped(words)
    if reason:
        pytest.skip(f"{' '.join(words)}: {reason}")
    cwd, data = workspace
    assignments, words = split_env(words)
    command = [sys.executable if w == "python" else w for w in shrink(words, cwd, data)]
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg", MINIRES_DATA_DIR=str(data), **assignments)
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (
        f"README command failed ({done.returncode}): {' '.join(words)}\nran as: {' '.join(command)}\n"
        f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}")
    assert sorted(p.name for p in cwd.parent.iterdir()) == ["work"], "a README command wrote beside its folder"
