"""Reading the teaching notebooks and their exercises (shared by the notebook and exercise tests).

An exercise cell carries the tag ``exercise:NAME`` in its metadata; its reference solution is
the block that follows ``# %% exercise: NAME`` in ``notebooks/solutions/<notebook stem>.py``
(up to the next such line). CI executes every notebook with the solutions in place of the
skeletons (``fill_in_solutions``).
"""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
SOLUTION_DIR = NOTEBOOK_DIR / "solutions"
TAG = "exercise:"
_BLOCK = re.compile(r"^# %% exercise: *(\S+) *$", flags=re.M)


def read(name):
    import nbformat
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def exercise_cells(nb):
    """{name: cell} for every exercise cell of ``nb``, in order."""
    found = {}
    for cell in nb.cells:
        for tag in cell.get("metadata", {}).get("tags", []):
            if tag.startswith(TAG):
                name = tag[len(TAG):]
                assert cell.cell_type == "code", f"exercise {name!r} is tagged on a {cell.cell_type} cell"
                assert name not in found, f"exercise {name!r} is tagged twice"
                found[name] = cell
    return found


def solution_blocks(notebook_name):
    """{name: source} of the reference solutions for ``notebook_name`` ({} if it has none)."""
    path = SOLUTION_DIR / (Path(notebook_name).stem + ".py")
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    marks = list(_BLOCK.finditer(text))
    return {m.group(1): text[m.end():(marks[i + 1].start() if i + 1 < len(marks) else len(text))].strip("\n") + "\n"
            for i, m in enumerate(marks)}


def fill_in_solutions(nb, notebook_name):
    """Replace each exercise skeleton in ``nb`` with its reference solution (in place)."""
    cells, solutions = exercise_cells(nb), solution_blocks(notebook_name)
    assert set(cells) == set(solutions), (
        f"{notebook_name}: exercises {sorted(cells)} but solutions {sorted(solutions)} "
        f"(notebooks/solutions/{Path(notebook_name).stem}.py)")
    for name, cell in cells.items():
        cell.source = solutions[name]
    return nb


def run_source(source, namespace=None):
    """Execute cell source in ``namespace`` (a fresh dict by default) and return the namespace:
    how a test runs a skeleton or a planted wrong solution before calling its check."""
    namespace = {} if namespace is None else namespace
    exec(compile(source, "<exercise>", "exec"), namespace)
    return namespace
