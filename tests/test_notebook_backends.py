"""Notebook 06 shows the committed GPU timings of benchmarks/README.md when no GPU answers: the
parser (the notebook cell tagged ``benchmark-readme-parser``) finds them in the README as it is."""
import re

import pytest

from notebook_tools import REPO, read, run_source

pytest.importorskip("nbformat", reason="nbformat is not installed (pip install -e '.[dev]')")


@pytest.fixture(scope="module")
def parser():
    cells = [c for c in read("06_backends.ipynb").cells if "benchmark-readme-parser" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "notebook 06 needs one cell tagged benchmark-readme-parser"
    return run_source(cells[0].source, {"os": __import__("os"), "re": re})


def test_parser_finds_the_committed_gpu_tables(parser):
    found = parser["committed_gpu_tables"](str(REPO / "benchmarks" / "README.md"))
    assert found is not None, "benchmarks/README.md: no '## GPU (...)' section with a table"
    machine, how, tables = found
    readme = (REPO / "benchmarks" / "README.md").read_text(encoding="utf-8")
    assert machine and re.search(r"^#+\s*GPU\b.*" + re.escape(machine), readme, flags=re.M)
    assert how and how.rstrip(".") in " ".join(readme.split())  # the section's first sentence, as written
    for header, rows in tables:
        assert rows and all(len(r) == len(header) for r in rows), (header, rows)
        assert not any(set("".join(r)) <= set("-: ") for r in rows)  # the |---| line is not a row
    first_cells = [r[0] for _, rows in tables for r in rows]
    # The notebook's two workloads: a 16->16 conv and a ResNet-20 training step.
    assert any(c.startswith("conv 16->16") for c in first_cells), first_cells
    assert any(c.startswith("ResNet-20") for c in first_cells), first_cells
    # Only the GPU section: the CPU tables (1 and 2 threads) and the kernel list come from other headings.
    assert not any("minires (NumPy)" in h for h, _ in tables)
    assert not any(c.startswith("`BatchNorm`") for c in first_cells)


def test_parser_follows_the_readme_rather_than_fixed_numbers(parser, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n| a | b |\n|---|---|\n| cpu | 1 |\n\n## GPU (NVIDIA H200, CuPy 15)\n\n"
                      "Two runs, batch 128, median ms. Then more\ntext.\n\n| op | ms |\n|---|---:|\n| conv 16->16 | 0.5 |\n| relu | 0.1 |\n\n"
                      "| model | img/s |\n|---|---:|\n| ResNet-20 | 5,000 |\n\n### Fused kernels\n\n| x | y |\n|---|---|\n"
                      "| k | 1 |\n", encoding="utf-8")
    machine, how, tables = parser["committed_gpu_tables"](str(readme))
    assert machine == "NVIDIA H200, CuPy 15" and how == "Two runs, batch 128, median ms."
    assert tables == [(["op", "ms"], [["conv 16->16", "0.5"], ["relu", "0.1"]]),
                      (["model", "img/s"], [["ResNet-20", "5,000"]])]
    md = parser["markdown_table"](*tables[1])
    assert md == "| model | img/s |\n| --- | --- |\n| ResNet-20 | 5,000 |"


def test_parser_returns_none_without_a_gpu_section(parser, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n| a | b |\n|---|---|\n| cpu | 1 |\n", encoding="utf-8")
    assert parser["committed_gpu_tables"](str(readme)) is None
    assert parser["committed_gpu_tables"](str(tmp_path / "missing.md")) is None
