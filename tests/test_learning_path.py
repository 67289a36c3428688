"""The learning path (website/learning_path.py) is the one list of the notebooks: notebooks/README.md and the
site's navigation are generated from it. These tests need nothing beyond the dev extra."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "website"))
import learning_path  # noqa: E402


def test_notebooks_readme_is_generated_from_the_list():
    expected = learning_path.render_readme()
    actual = (REPO / "notebooks" / "README.md").read_text(encoding="utf-8")
    assert actual == expected, ("notebooks/README.md is out of date with website/learning_path.py: "
                                "run python website/learning_path.py (and edit the list there, not the README)")


def test_check_mode_reports_a_stale_readme(tmp_path, monkeypatch):
    stale = tmp_path / "README.md"
    stale.write_text(learning_path.render_readme().replace("2 s", "3 s", 1), encoding="utf-8")
    monkeypatch.setattr(learning_path, "README", stale)
    monkeypatch.setattr(learning_path, "REPO", tmp_path)
    assert learning_path.main(["--check"]) == 1
    assert learning_path.main([]) == 0  # rewrites it
    assert learning_path.main(["--check"]) == 0
    assert stale.read_text(encoding="utf-8") == learning_path.render_readme()


def test_the_script_checks_from_the_command_line():
    done = subprocess.run([sys.executable, str(REPO / "website" / "learning_path.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_list_holds_every_notebook_in_order():
    on_disk = sorted(p.name for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    listed = [nb.file for nb in learning_path.NOTEBOOKS]
    assert listed == on_disk, "every notebook, once, in the order of its number"
    assert [nb.number for nb in learning_path.NOTEBOOKS] == [f"{i:02d}" for i in range(1, len(listed) + 1)]


@pytest.mark.parametrize("nb", learning_path.NOTEBOOKS, ids=lambda nb: nb.file)
def test_each_title_is_its_notebooks_heading(nb):
    cells = json.loads((REPO / "notebooks" / nb.file).read_text(encoding="utf-8"))["cells"]
    first = "".join(cells[0]["source"]).splitlines()[0]
    assert first == f"# {nb.number} · {nb.title}", f"{nb.file}: heading {first!r}, the list says {nb.title!r}"
    assert nb.time and nb.summary


def test_exercises_listed_are_the_notebooks_with_exercise_cells():
    for nb in learning_path.NOTEBOOKS:
        cells = json.loads((REPO / "notebooks" / nb.file).read_text(encoding="utf-8"))["cells"]
        tagged = any(t.startswith("exercise:") for c in cells for t in c.get("metadata", {}).get("tags", []))
        assert bool(nb.exercises) == tagged, f"{nb.file}: exercise cells {tagged}, the list says {nb.exercises!r}"


def test_navigation_follows_the_list():
    nav = learning_path.nav()
    assert [next(iter(entry.values())) for entry in nav] == [f"notebooks/{nb.file}" for nb in learning_path.NOTEBOOKS]
    assert next(iter(nav[0])) == "01 · The autograd engine"
