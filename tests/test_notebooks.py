"""The teaching notebooks (notebooks/*.ipynb) run top to bottom, and are committed with outputs.

CI executes every notebook in a fresh kernel of *this* Python (the ``python3`` kernelspec
resolves to ``sys.executable`` when ipykernel is installed here; a test checks it), with the
working directory ``notebooks/`` and ``MINIRES_FAST=1`` in the environment (smaller shapes and
fewer iterations; the reader's default, with the variable unset, does the full work). Any
cell error fails the test. BLAS libraries get one thread unless the environment says
otherwise: on a loaded 2-core machine, multi-threaded OpenBLAS spins against the other
processes and small matmuls get ten times slower.

Exercises: CI runs each notebook with the reference solutions (notebooks/solutions/) in place
of the exercise skeletons, and every check must pass there. The committed notebooks are the
learner's copy: skeletons untouched, their checks printing "not done yet".

Re-execute notebooks in the reader's default mode and save them with their outputs (what
gets committed), from the repository root:

    python tests/test_notebooks.py notebooks/05_degradation.ipynb [more notebooks ...]
    python tests/test_notebooks.py --all
"""
import os
import re
import sys
import time
from pathlib import Path

import pytest

# The notebook tools come with the dev extra; a bare machine (e.g. a GPU box) skips these tests.
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install -e '.[dev]')")
nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[dev]')")

from notebook_tools import NOTEBOOK_DIR, REPO, exercise_cells, fill_in_solutions, read

# The learner's path, in order: the file names' numbers give it. README.md lists them in this
# order under a "Notebooks" heading.
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
# Every notebook's first code cell prints this line when MINIRES_FAST is set: committed
# outputs must come from the reader's default mode, so it must not appear in them.
FAST_MARKER = "fast mode (MINIRES_FAST=1)"
CELL_TIMEOUT_S = 600  # generous: a loaded CI machine can be slow; a hung cell still ends
# All six together took about 17 s in fast mode on a shared 2-core machine (the aim is < 90 s);
# the test allows far more, so that only a fast switch that stopped working fails it.
FAST_BUDGET_S = 240


def kernel_env(fast, empty_cache=None):
    """The environment of the notebook's kernel: the repository importable, MINIRES_FAST set
    (fast) or removed (the reader's default), inline plots, one BLAS thread unless set. With an
    ``empty_cache`` folder, no CIFAR-10 anywhere: $MINIRES_DATA_DIR removed and the user cache
    there (the tests' MINIRES_OFFLINE=1 keeps the kernel from downloading)."""
    env = dict(os.environ)
    if empty_cache is not None:
        env.pop("MINIRES_DATA_DIR", None)
        env["XDG_CACHE_HOME"] = str(empty_cache)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if fast:
        env["MINIRES_FAST"] = "1"
    else:
        env.pop("MINIRES_FAST", None)
    env.pop("MPLBACKEND", None)  # ipykernel's inline backend, so that figures become outputs
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def execute(nb, fast, cwd=NOTEBOOK_DIR, timeout=CELL_TIMEOUT_S, solutions=False, empty_cache=None, tmpdir=None):
    """Run ``nb`` (a NotebookNode) in place, in a fresh ``python3`` kernel; raises
    ``nbclient.exceptions.CellExecutionError`` naming the cell when one fails. With
    ``solutions``, exercise checks raise unless they pass (the caller fills the solutions in);
    ``empty_cache`` as in :func:`kernel_env`; ``tmpdir`` the kernel's TMPDIR."""
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                     resources={"metadata": {"path": str(cwd)}})
    env = kernel_env(fast, empty_cache)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    if solutions:
        env["MINIRES_EXERCISES"] = "solutions"
    else:
        env.pop("MINIRES_EXERCISES", None)
    client.execute(env=env)
    return nb


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def output_text(cell):
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append(out["text"])
        parts.extend(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
    return "".join(parts)


# --------------------------------------------------------------------------- CI execution

_timings = {}
# The notebooks that train or measure on CIFAR-10 images: with no data they use synthetic images
# and say so; with genuine data ($MINIRES_DATA_DIR) they use the learner's subset.
DATA_NOTEBOOKS = [n for n in NOTEBOOKS if n[:2] in ("07", "08", "09", "10")]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_fast_mode(name, tmp_path):
    """Each notebook runs top to bottom, offline and with no data files, with its exercises'
    reference solutions filled in, and every exercise check passes (a check that does not raises,
    see minires.exercises). It leaves nothing in the temporary folder."""
    nb = fill_in_solutions(read(name), name)
    start = time.perf_counter()
    (tmp_path / "tmp").mkdir()
    execute(nb, fast=True, solutions=True, empty_cache=tmp_path / "cache", tmpdir=tmp_path / "tmp")
    _timings[name] = time.perf_counter() - start
    left = list((tmp_path / "tmp").glob("minires-*"))
    assert not left, f"{name} left {left} in the temporary folder"
    assert not (tmp_path / "cache" / "minires").exists(), f"{name} created a data folder in the user cache"
    if name in DATA_NOTEBOOKS:
        text = "".join(output_text(c) for c in code_cells(nb))
        assert "synthetic CIFAR-shaped images" in text and "not CIFAR-10" in text, (
            f"{name}: without data it must say that it runs on synthetic images")
        assert "CIFAR-10, the" not in text, f"{name}: claims CIFAR-10 while running on synthetic images"
    assert FAST_MARKER in output_text(code_cells(nb)[0]), (
        f"{name}: the first code cell must read MINIRES_FAST and print {FAST_MARKER!r} when it is set")
    errors = [c for c in code_cells(nb) for o in c.outputs if o.output_type == "error"]
    assert not errors  # nbclient raises on errors already; this guards allow_errors cells


@pytest.mark.genuine_data
@pytest.mark.parametrize("name", DATA_NOTEBOOKS)
def test_notebook_runs_on_genuine_data(name):
    """With genuine CIFAR-10 ($MINIRES_DATA_DIR), the data notebooks train and measure on the
    learner's subset, and say so."""
    nb = fill_in_solutions(read(name), name)
    execute(nb, fast=True, solutions=True)
    text = "".join(output_text(c) for c in code_cells(nb))
    assert "CIFAR-10, the learner's subset" in text and "synthetic CIFAR-shaped images" not in text


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_names_no_folder_beside_the_repository(name):
    """Notebooks find data through minires.data alone: no path outside the repository, by any spelling,
    in their code and text (their outputs: tests/test_readme_commands.py checks every product file)."""
    raw = "\n".join(cell.source for cell in read(name).cells)
    for pattern in (r"shared/data", r'"shared",\s*\\?"data"', r"cifar-10-sample", r"MINIRES_CIFAR_SAMPLE",
                    r"\.\./\.\./"):
        assert not re.search(pattern, raw), f"{name} contains {pattern!r}"


def test_fast_mode_fits_the_budget():
    """All the notebooks together stay quick in fast mode (timed by the tests above)."""
    if set(_timings) != set(NOTEBOOKS):
        pytest.skip("needs every test_notebook_runs_in_fast_mode case to run first, in this session")
    total = sum(_timings.values())
    shown = ", ".join(f"{n[:2]} {t:.1f}s" for n, t in _timings.items())
    assert total < FAST_BUDGET_S, f"notebooks took {total:.1f}s in fast mode (> {FAST_BUDGET_S}s): {shown}"


def test_kernel_is_this_python():
    """The ``python3`` kernel nbclient starts is this interpreter (so the notebooks test this
    environment's minires and NumPy, not some other Python's)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    execute(nb, fast=True)
    assert output_text(nb.cells[0]).strip() == sys.executable


# --------------------------------------------------------------------------- committed state

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_with_outputs(name):
    """Notebooks are committed executed, in the reader's default mode, without errors."""
    nb = read(name)
    cells = code_cells(nb)
    assert cells, f"{name} has no code cells"
    missing = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.execution_count is None]
    assert not missing, f"{name}: cells {missing} were never executed; run python tests/test_notebooks.py --all"
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), f"{name}: cells were not run top to bottom once: {counts}"
    assert not any(o.output_type == "error" for c in cells for o in c.outputs), f"{name}: a cell has an error output"
    assert not any(FAST_MARKER in output_text(c) for c in cells), (
        f"{name}: committed outputs come from a MINIRES_FAST=1 run; re-execute in the default mode")
    for ex_name, cell in exercise_cells(nb).items():
        assert "todo(" in cell.source, f"{name}: exercise {ex_name!r} must be committed as its skeleton (calling todo())"
    first_markdown = next(c for c in nb.cells if c.cell_type == "markdown").source
    assert "you will be able to" in first_markdown.lower(), f"{name}: must open with what the reader will be able to do"


def test_readme_lists_the_notebooks_in_order():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^##+ Notebooks\s*$(.*?)(?=^## |\Z)", readme, flags=re.M | re.S)
    assert match, "README.md needs a '## Notebooks' section listing notebooks/01_autograd.ipynb ... in order"
    section = match.group(1)
    positions = [section.find(f"notebooks/{name}") for name in NOTEBOOKS]
    assert all(p >= 0 for p in positions), (
        f"README's Notebooks section misses {[n for n, p in zip(NOTEBOOKS, positions) if p < 0]}")
    assert positions == sorted(positions), "README's Notebooks section lists the notebooks out of order"


def test_every_notebook_is_tested():
    on_disk = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    assert on_disk == NOTEBOOKS, f"notebooks/ holds {on_disk}; every notebook's name starts with its number (NN_)"


# --------------------------------------------------------------------------- re-execution

def main(argv):
    """Execute notebooks in the reader's default mode and save them with their outputs."""
    if not argv or argv in (["-h"], ["--help"]):
        print(__doc__)
        return 2
    paths = [NOTEBOOK_DIR / n for n in NOTEBOOKS] if argv == ["--all"] else [Path(a).resolve() for a in argv]
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        execute(nb, fast=False)
        nbformat.write(nb, path)
        print(f"{path.name}: executed in {time.perf_counter() - start:.1f}s, saved ({path.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
