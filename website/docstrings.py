"""minires's docstrings, written for a terminal (reStructuredText habits), read as Markdown on the site.

The source docstrings stay as they are: plain text, readable in ``help()`` and in an editor. This griffe
extension (named in mkdocs.yml's mkdocstrings options) changes only what the site renders:

- a paragraph ending in ``::`` introduces a literal block: the indented lines under it (the formulas)
  become a fenced plain-text block, kept line for line; so does an RST simple table (``=== ===``) and any
  other block indented under a line of prose (aligned continuation lines, shape diagrams);
- a Google-style section (``Args:`` and the like) becomes a bold heading and a list of its entries;
- ``*emphasis*`` stays emphasis, ````code```` becomes a code span, and ``:func:`name``` (``:class:``,
  ``:meth:``, ...) a link to that object's entry when the name resolves in minires, a code span otherwise;
- in the prose, the characters Markdown would take for markup (``*`` and ``_`` in ``k*k*C_in``, ``<`` in
  ``runs/<name>``, ``[`` ``]``, ``$``, a leading ``#``) are escaped, so the text reads as written.

``python website/docstrings.py minires.ops.norm.BatchNorm`` prints one converted docstring.
"""
import re
import textwrap

try:
    import griffe
except ImportError:  # the converter itself needs nothing; only the extension class needs griffe
    griffe = None

SECTION = re.compile(r"^(Args|Arguments|Parameters|Keyword Args|Returns|Yields|Raises|Attributes|Example|Examples|"
                     r"Note|Notes|Warning|Warnings|See Also):\s*$")
TABLE_BORDER = re.compile(r"^=+( +=+)+ *$")
INLINE = re.compile(r"(?<![\w*])\*([^*\s](?:[^*\n]*[^*\s])?)\*(?![\w*])|``([^`]+?)``(?!`)"
                    r"|:(?:py:)?(?:func|class|meth|mod|attr|data|obj|exc):`~?([^`]+)`|`([^`]+)`")
ENTRY = re.compile(r"^([\w*][\w, *]*?)(?: \(([^)]*)\))?: ?(.*)$")
FENCE = "```"


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def escape_prose(text):
    """Markdown's markup characters in plain prose, escaped (code spans are handled before this)."""
    text = text.replace("\\", "\\\\")
    for ch in "*_[]<>$|":
        text = text.replace(ch, "\\" + ch)
    return re.sub(r"(?m)^( *)#", r"\1\\#", text)


def convert_inline(text, resolve):
    """Prose (one paragraph, lines kept): RST code and roles to Markdown, everything else escaped."""
    text = re.sub(r"(?m)^( *)[*+] ", r"\1- ", text)  # RST's bullets, as Markdown's "-" (not escaped)
    out, pos = [], 0
    for m in INLINE.finditer(text):
        out.append(escape_prose(text[pos:m.start()]))
        emphasis, code, role, single = m.groups()
        if emphasis is not None:  # RST's *emphasis* is Markdown's
            out.append("*" + escape_prose(emphasis) + "*")
        elif role is not None:
            name = " ".join(role.split())
            label = name.split(".")[-1] if m.group(0).split("`")[1].startswith("~") else name
            target = resolve(name)
            out.append(f"[{code_span(label)}][{target}]" if target else code_span(label))
        else:
            out.append(code_span(" ".join((code if code is not None else single).split("\n"))))
        pos = m.end()
    out.append(escape_prose(text[pos:]))
    return "".join(out)


def code_span(text):
    ticks = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fenced(lines):
    body = textwrap.dedent("\n".join(lines)).strip("\n")
    return [FENCE + "text", *body.split("\n"), FENCE]


def take_indented(lines, i, base):
    """Lines from i on that are blank or indented deeper than ``base`` (trailing blanks left out)."""
    j = i
    while j < len(lines) and (not lines[j].strip() or indent_of(lines[j]) > base):
        j += 1
    while j > i and not lines[j - 1].strip():
        j -= 1
    return j


def section(lines, title, resolve):
    """A Google-style section's entries (``name: text`` lines, continuations deeper) as a list."""
    out = [f"**{title}:**", ""]
    base = min(indent_of(ln) for ln in lines if ln.strip())
    entries = []
    for ln in lines:
        if not ln.strip():
            continue
        if indent_of(ln) == base:
            entries.append([ln.strip()])
        else:
            entries[-1].append(ln.strip())
    for entry in entries:
        m = ENTRY.match(entry[0])
        if m and title not in ("Example", "Examples", "Note", "Notes", "Warning", "Warnings"):
            names = ", ".join(code_span(n.strip()) for n in m.group(1).split(","))
            kind = f" ({escape_prose(m.group(2))})" if m.group(2) else ""
            text = " ".join([m.group(3)] + entry[1:])
            out.append(f"- {names}{kind}: " + convert_inline(text, resolve).strip())
        else:
            out.append("- " + convert_inline(" ".join(entry), resolve).strip())
    return out


def rst_to_markdown(doc, resolve=lambda name: None):
    """A docstring (already dedented, as griffe holds it) as Markdown; see the module's docstring."""
    lines = doc.expandtabs().split("\n")
    out, prose, i = [], [], 0

    def flush():
        if prose:
            out.append(convert_inline("\n".join(prose), resolve))
            prose.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if TABLE_BORDER.match(stripped):  # an RST simple table: up to its third border, or a blank line
            j, borders = i, 0
            while j < len(lines) and lines[j].strip() and borders < 3:
                borders += bool(TABLE_BORDER.match(lines[j].strip()))
                j += 1
            flush()
            out += ["", *fenced(lines[i:j]), ""]
            i = j
            continue
        m = SECTION.match(stripped)
        if m and i + 1 < len(lines) and indent_of(lines[i + 1]) > indent_of(line):
            j = take_indented(lines, i + 1, indent_of(line))
            flush()
            out += ["", *section(lines[i + 1:j], m.group(1), resolve), ""]
            i = j
            continue
        if stripped.endswith("::"):  # "text::" -> "text:"; a lone "::" or " ::" shows no colon
            text = line.rstrip()[:-2]
            text = text.rstrip() if text.endswith(" ") or not text.strip() else text + ":"
            if text.strip():
                prose.append(text)
            flush()
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j < len(lines) and indent_of(lines[j]) > indent_of(line):
                k = take_indented(lines, j, indent_of(line))
                out += ["", *fenced(lines[j:k]), ""]
                i = k
            else:
                i += 1
            continue
        if (stripped and (out or prose) and i > 0 and lines[i - 1].strip() and indent_of(line) > indent_of(lines[i - 1])
                and not re.match(r"^([*+-]|\d+[.)]) +", lines[i - 1].strip())
                and not (indent_of(line) - indent_of(lines[i - 1]) <= 4 and list_item_above(lines, i))):
            # indented under a line of prose (not a list item's continuation): keep it as laid out
            k = take_indented(lines, i, indent_of(lines[i - 1]))
            flush()
            out += ["", *fenced(lines[i:k]), ""]
            i = k
            continue
        if stripped:
            prose.append(line)
        else:
            flush()
            out.append("")
        i += 1
    flush()
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def list_item_above(lines, i):
    """Whether line i continues a list item (a bullet above it, at a smaller indent, in the same paragraph)."""
    j = i - 1
    while j >= 0 and lines[j].strip():
        if re.match(r"^([*+-]|\d+[.)]) +", lines[j].strip()) and indent_of(lines[j]) < indent_of(lines[i]):
            return True
        j -= 1
    return False


if griffe is not None:
    class RstToMarkdown(griffe.Extension):
        """Converts every docstring of the loaded package (see the module's docstring)."""

        def on_package(self, *, pkg, **kwargs):
            paths = {}

            def walk(obj):
                for member in obj.members.values():
                    try:
                        canonical = member.target_path if member.is_alias else member.path
                    except Exception:  # an alias whose target is outside the package
                        continue
                    paths.setdefault(member.path, canonical)
                    if not member.is_alias and (member.is_module or member.is_class):
                        walk(member)

            paths[pkg.path] = pkg.path
            walk(pkg)

            def convert(obj):
                scopes = [s.path for s in (obj, obj.parent, getattr(obj.parent, "parent", None)) if s is not None]
                scopes.append(obj.module.path if not obj.is_module else obj.path)

                def resolve(name):
                    for candidate in [f"{scope}.{name}" for scope in scopes] + [name]:
                        if candidate in paths:
                            return paths[candidate]
                    return None

                if obj.docstring is not None:
                    obj.docstring.value = rst_to_markdown(obj.docstring.value, resolve)
                for member in obj.members.values():
                    if not member.is_alias:
                        convert(member)

            convert(pkg)


if __name__ == "__main__":
    import sys
    from pathlib import Path
    package = griffe.load(sys.argv[1].split(".")[0], search_paths=[str(Path(__file__).resolve().parents[1])],
                          extensions=griffe.load_extensions(RstToMarkdown))
    target = package[".".join(sys.argv[1].split(".")[1:])] if "." in sys.argv[1] else package
    print(target.docstring.value)
