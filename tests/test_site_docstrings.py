"""website/docstrings.py: minires's plain-text docstrings as the site renders them (Markdown). The source
docstrings are not changed; only what mkdocstrings is given. Needs nothing beyond the dev extra."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "website"))
from docstrings import rst_to_markdown  # noqa: E402


def test_a_literal_block_after_double_colon_is_kept_line_for_line():
    doc = ("Training mode::\n\n    mean = (1/m) sum x,   var = (1/m) sum (x - mean)^2\n"
           "    x_hat = (x - mean) / sqrt(var + eps)\n\nAfter.")
    md = rst_to_markdown(doc)
    assert md.splitlines()[:5] == ["Training mode:", "", "```text",
                                   "mean = (1/m) sum x,   var = (1/m) sum (x - mean)^2",
                                   "x_hat = (x - mean) / sqrt(var + eps)"]
    assert md.endswith("```\n\nAfter.")


def test_a_lone_double_colon_shows_no_colon():
    assert rst_to_markdown("The formula ::\n\n    y = x\n").startswith("The formula\n\n```text\ny = x\n```")


def test_prose_markup_characters_are_escaped_but_code_is_not():
    md = rst_to_markdown("m = N*H*W values in runs/<name>, [0, 1], ``x_hat * 2`` and $HOME")
    assert md == "m = N\\*H\\*W values in runs/\\<name\\>, \\[0, 1\\], `x_hat * 2` and \\$HOME"


def test_rst_emphasis_and_code_spanning_lines():
    md = rst_to_markdown("the *last* block; ``conv2d(...,\nalgorithm='auto')`` is the default")
    assert md == "the *last* block; `conv2d(..., algorithm='auto')` is the default"


def test_roles_link_when_the_name_resolves():
    resolve = {"load_cifar10": "minires.data.cifar10.load_cifar10"}.get
    md = rst_to_markdown("like :func:`load_cifar10` or :meth:`state_dict`", resolve)
    assert md == "like [`load_cifar10`][minires.data.cifar10.load_cifar10] or `state_dict`"


def test_a_google_section_becomes_a_list():
    doc = "A net.\n\nArgs:\n    depth: 6n+2.\n    num_classes, in_channels: sizes\n        of the input.\n"
    md = rst_to_markdown(doc)
    assert "**Args:**\n\n- `depth`: 6n+2.\n- `num_classes`, `in_channels`: sizes of the input." in md


def test_an_rst_table_and_an_indented_block_stay_plain_text():
    doc = ("Stems:\n\n=====  =====\nstem   layers\n=====  =====\ncifar  3x3\n=====  =====\n\n"
           "x (N, C, H, W) ->\n      (C, N*H*W)\n")
    md = rst_to_markdown(doc)
    assert "```text\n=====  =====\nstem   layers\n=====  =====\ncifar  3x3\n=====  =====\n```" in md
    assert md.endswith("x (N, C, H, W) -\\>\n\n```text\n(C, N*H*W)\n```")


def test_bullets_stay_a_list():
    md = rst_to_markdown("Layers:\n\n* ``Conv2d`` and\n  ``Linear``\n* ``ReLU``")
    assert md == "Layers:\n\n- `Conv2d` and\n  `Linear`\n- `ReLU`"
