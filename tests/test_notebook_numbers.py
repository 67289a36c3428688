"""No typed number in a notebook's prose can go stale.

A notebook's markdown cells are typed once; its outputs are regenerated on every run. So a percentage
(``61.8 %``, ``61.8%``) or a multiplier (``25.5×``, ``25.5x``) in a markdown cell must be one of:

- a number the notebook's own committed outputs show (a generated sentence, a printed line): then the
  prose and the measurement were produced together, and re-executing the notebook checks them again;
- a number in the committed results the notebook reads (``READ_RESULTS``: e.g. notebook 05 reads
  ``docs/degradation/*/results.md``);
- a figure of the paper, or a constant derived from the recipe, in ``ALLOWED`` below, each with its
  source. These do not change when anything is re-run.

Anything else is a number typed from some earlier run, which the next run will contradict: generate
the sentence from the numbers instead (``display(Markdown(f"..."))``).

A prose number counts as shown when the same digits appear in an output as a number of their own
(not inside a longer number: ``61.8`` is not found in ``161.85``).
"""
import re

import pytest

from notebook_tools import NOTEBOOK_DIR, REPO, read

NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))

# The paper's figures and the constants derived from its recipe that prose may quote, with their sources.
# One list for all notebooks: (the number, what it is, where it comes from).
ALLOWED = [
    ("80 %", "the warm-up's threshold: lr 0.01 until the training error is below 80 %", "He et al. 2015, Sec. 4.2"),
    ("8.75 %", "ResNet-20's CIFAR-10 test error", "He et al. 2015, Table 6"),
    ("2.25×", "Winograd F(2×2, 3×3): 16 multiplies per 2×2 output tile instead of 36",
     "Lavin & Gray 2016, derived in notebook 02"),
    ("10×", "1/(1 − μ) for momentum μ = 0.9: the step a constant gradient builds up, and the factor momentum puts "
     "on L2 weight decay's rate", "the paper's momentum 0.9 (Sec. 3.4, 4.2)"),
    ("4×", "a bottleneck block's ends are 4× wider than its 3×3 layer (64 → 256 channels)",
     "He et al. 2015, Sec. 4.1, Fig. 5"),
    ("5 %", "the first 5 % of the line between two images", "notebook 07's own constant SPAN = 0.05, in its code"),
    ("10 %", "a BN running average's momentum 0.1: each new batch weighs 10 %",
     "BatchNorm2d's default momentum, PyTorch's and minires' (notebook 03)"),
    ("0.2 %", "zero-initialised residual branches: 'improves the model by 0.2~0.3%' (lower bound)",
     "a code comment in torchvision/models/resnet.py, citing Goyal et al. 2017"),
    ("0.3 %", "the same comment's upper bound", "torchvision/models/resnet.py"),
]

# Committed results a notebook reads when it runs: their numbers may appear in its prose.
READ_RESULTS = {
    "05": ["docs/degradation/cpu/results.md", "docs/degradation/cpu-no-warmup/results.md",
           "docs/degradation/gpu/results.md"],
}

# A number, then a percent sign or a multiplication sign (× or a lone x), with or without a space.
NUMBER = r"(\d+(?:[.,]\d+)*)"
PERCENT = re.compile(NUMBER + r"\s?%")
TIMES = re.compile(NUMBER + r"\s?(?:×(?!\s?\d)|x(?![A-Za-z0-9_]))")  # not 3×3, 32 x 32


def quoted(text):
    """The set of ('%' or '×', digits) that ``text`` quotes as percentages and multipliers."""
    text = re.sub(r"\\times", "×", text).replace("\\%", "%")
    return {("%", m.group(1)) for m in PERCENT.finditer(text)} | {("×", m.group(1)) for m in TIMES.finditer(text)}


def allowed():
    found = set()
    for number, _, _ in ALLOWED:
        found |= quoted(number)
    return found


def outputs(nb):
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            parts.extend(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


def shown(digits, text):
    """Whether ``digits`` appear in ``text`` as a number of their own."""
    return re.search(r"(?<![\d.,])" + re.escape(digits) + r"(?![\d]|[.,]\d)", text) is not None


def stale_numbers(nb, read_text=""):
    """[(cell index, '61.8 %')] for every typed percentage or multiplier that nothing backs."""
    evidence, ok = outputs(nb) + "\n" + read_text, allowed()
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for kind, digits in sorted(quoted(cell.source)):
            if (kind, digits) not in ok and not shown(digits, evidence):
                found.append((i, f"{digits} {kind}"))
    return found


def read_results(name):
    texts = []
    for rel in READ_RESULTS.get(name[:2], []):
        path = REPO / rel
        if path.exists():
            texts.append(path.read_text(encoding="utf-8"))
    return "\n".join(texts)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_prose_quotes_only_numbers_it_shows(name):
    stale = stale_numbers(read(name), read_results(name))
    assert not stale, (
        f"{name}: markdown cells quote numbers that no committed output, read result or the paper (ALLOWED in "
        f"tests/test_notebook_numbers.py) backs: {stale}. Generate the sentence from the numbers "
        f"(display(Markdown(f'...'))), or, for a figure of the paper, add it to ALLOWED with its source.")


def test_the_check_catches_a_typed_number():
    """A planted number in the prose fails; the same number in an output, or an allowed one, does not."""
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("plain-32 ends at 61.8 % training error, 25.5× slower; warm-up below 80 %."),
        nbformat.v4.new_code_cell("print(1)"),
    ])
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="the run took 3.2 s\n")]
    assert stale_numbers(nb) == [(0, "61.8 %"), (0, "25.5 ×")]
    nb.cells[1].outputs[0]["text"] += "training error 61.8 %, grew 25.5x\n"
    assert stale_numbers(nb) == []
    # not found inside a longer number
    nb.cells[1].outputs[0]["text"] = "161.85 and 25.55\n"
    assert stale_numbers(nb) == [(0, "61.8 %"), (0, "25.5 ×")]
    # every spelling is caught
    assert quoted("61.8%, 61.8 %, 25.5x, 25.5 ×, $3\\times$, 3x3 kernels") == {
        ("%", "61.8"), ("×", "25.5"), ("×", "3")}


def test_a_planted_number_in_a_committed_notebook_fails():
    """The committed notebook 05 with one typed number added to its first cell fails the check."""
    nb = read("05_degradation.ipynb")
    nb.cells[0].source += "\n\nplain-32 ends 37.9 % above plain-14."
    assert (0, "37.9 %") in stale_numbers(nb, read_results("05_degradation.ipynb"))
