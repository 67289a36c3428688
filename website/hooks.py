"""MkDocs hooks: the repository, laid out as it is on disk, read as one site.

- **Pages.** README.md is the home page; notebooks/ (README.md and the notebooks of the learning path),
  docs/ and benchmarks/ keep their paths, so every relative link between them works on the site as it
  does in the repository. Files those pages link to that are not pages (figures, scripts, JSON) are
  copied beside them.
- **Navigation** from ``website/learning_path.py``'s list (the same list that writes notebooks/README.md).
- **API reference**: one page per public module of minires (a name without a leading underscore),
  rendered by mkdocstrings from the docstrings; ``api/index.md`` lists them all. Links from the pages
  to ``minires/...py`` go to that module's page.
- **Reference solutions** (notebooks/solutions/*.py) on one page of their own, behind a warning; never
  on the exercise pages.
- **Offline**: MathJax 3 is copied from the ``django-static-mathjax`` package (MathJax's release files)
  into ``assets/mathjax``; every page that has math loads it from there, relative to the page.
- **Checks**: after the build, every ``href``/``src`` of every page must resolve to a file of the site
  (and a ``#fragment`` to an ``id`` on that page), and no page may load anything from another host.
  A failure stops ``mkdocs build`` (and the strict mode turns MkDocs' own warnings into errors).
"""
import ast
import functools
import html
import importlib.util
import logging
import os
import posixpath
import re
import shutil
import textwrap
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, InclusionLevel

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "minires"
log = logging.getLogger("mkdocs.hooks.minires")


def _sibling(name):
    """website/<name>.py (MkDocs loads this file by path, so its folder is not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


learning_path = _sibling("learning_path")
docstrings = _sibling("docstrings")

# What the site holds of the repository, by path. Pages: Markdown and the learning path's notebooks.
MARKDOWN_PAGES = ["README.md", "notebooks/README.md", "benchmarks/README.md"]
PAGE_TREES = ["docs"]                       # every .md under these is a page, every other file an asset
ASSET_TREES = ["docs", "benchmarks"]        # files that pages may link to (scripts, figures, data)
SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints"}
SKIP_SUFFIXES = {".npz", ".pyc"}
MATHJAX_PLACEHOLDER = "@@MATHJAX@@"         # mkdocs.yml's custom_mathjax_url: replaced by the site's MathJax
MATHJAX_DIR = "assets/mathjax"
MATHJAX_FILE = "tex-svg-full.js"            # MathJax 3, every TeX extension, SVG output: one file, no fonts
# Notebook pages: TeX in the Markdown cells as Jupyter writes it ($...$, $$...$$) and in the table of contents
# (headings), not in the site's header, navigation and footer (code and text outputs are <pre>/<code>, which
# MathJax skips anyway).
# Markdown pages: only what pymdownx.arithmatex marked as math (generic mode: \(...\), \[...\]).
MATHJAX_CONFIG = """<script>
window.MathJax = {
  tex: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],
        processEscapes: true, processEnvironments: true, tags: "ams"},
  svg: {fontCache: "global"},
  options: {%s}
};
</script>
"""
NOTEBOOK_MATH = 'ignoreHtmlClass: "md-header|md-sidebar--primary|md-footer|md-search|md-tabs"'  # TOC: math too
MARKDOWN_MATH = 'ignoreHtmlClass: ".*|", processHtmlClass: "arithmatex"'


# --------------------------------------------------------------------------------------------- modules
@functools.lru_cache(maxsize=None)
def public_modules():
    """Every public module of the package, dotted, in a reading order: each package before its modules."""
    names = []
    for path in sorted((REPO / PACKAGE).rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts) or SKIP_PARTS & set(rel.parts):
            continue
        names.append(".".join(parts))
    return tuple(sorted(names, key=lambda n: [(0 if n == m else 1, m) for m in n.split(".")]))


def is_package(module):
    return (REPO / Path(*module.split(".")) / "__init__.py").exists()


def api_uri(module):
    return f"api/{module}.md"


def first_line(module):
    """The first line of a module's docstring (read without importing it)."""
    path = REPO / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.strip().split("\n\n")[0].replace("\n", " ")


def exported(module):
    """A package's ``__all__`` (None when it has none), read without importing it."""
    tree = ast.parse((REPO / Path(*module.split(".")) / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return [ast.literal_eval(e) for e in node.value.elts]
    return None


def module_page(module):
    """The Markdown of one module's API page: its docstring and members, rendered by mkdocstrings."""
    lines = [f"# `{module}`", "", f"::: {module}", "    options:", "      show_root_heading: false",
             "      show_root_toc_entry: false"]
    subs = [m for m in public_modules() if m.rsplit(".", 1)[0] == module and m != module]
    if is_package(module) and subs:
        # a package's members are documented on its modules' pages: here its docstring and what it exports
        # (a package without public modules, minires.autotune, is its own code: documented like a module)
        lines.append("      members: false")
        names = exported(module)
        if names:
            lines += ["", "**Exported names** (`from " + module + " import ...`): "
                      + ", ".join(exported_link(module, n) for n in names) + "."]
        lines += ["", "**Modules:**", ""] + [f"- [`{m}`]({m}.md): {escape(first_line(m))}" for m in subs]
    return "\n".join(lines) + "\n"


_GRIFFE = {}


def exported_link(package, name):
    """A link to what ``package.name`` is: a module's page, or the entry of a class or function."""
    import griffe
    if "pkg" not in _GRIFFE:
        _GRIFFE["pkg"] = griffe.load(PACKAGE, search_paths=[str(REPO)], resolve_aliases=True,
                                     resolve_external=False)
    obj = _GRIFFE["pkg"][f"{package}.{name}".split(".", 1)[1]]
    path = obj.target_path if obj.is_alias else obj.path
    target = _GRIFFE["pkg"][path.split(".", 1)[1]] if "." in path else _GRIFFE["pkg"]
    if target.is_module:
        return f"[`{name}`]({api_uri(target.path).removeprefix('api/')})"
    return f"[`{name}`][{path}]"


def escape(text):
    """A docstring's first line as Markdown (code spans kept, the rest as written)."""
    return docstrings.convert_inline(text, lambda name: None)


def api_index():
    modules = public_modules()
    rows = "\n".join(f"| [`{m}`]({m}.md) | {escape(first_line(m))} |" for m in modules)
    return textwrap.dedent("""\
        # API reference

        Generated from the docstrings of every public module of minires (every module whose name does
        not start with an underscore), one page per module, in the order of the package: each op's
        forward, backward and formulas are in its class's docstring, the formulas as plain-text blocks, as
        in the source. The functions most code calls live in [`minires.functional`](minires.functional.md)
        (`F.conv2d`, `F.batch_norm`, `F.cross_entropy`, ...), the layers in [`minires.nn`](minires.nn.md) and
        the networks in [`minires.models`](minires.models.md) (`cifar_resnet`, `BasicBlock`, ...).
        Each entry shows its source (expand "Source code").

        | module | what it holds |
        |---|---|
        """) + rows + "\n"


# ----------------------------------------------------------------------------------- files and nav
def repo_file(config, src_uri, inclusion=InclusionLevel.INCLUDED):
    return File(src_uri, str(REPO), config["site_dir"], config["use_directory_urls"], inclusion=inclusion)


def walk(tree):
    for path in sorted((REPO / tree).rglob("*")):
        rel = path.relative_to(REPO)
        if path.is_file() and not (SKIP_PARTS & set(rel.parts)) and path.suffix not in SKIP_SUFFIXES:
            yield rel.as_posix()


def solutions_page():
    """notebooks/solutions/*.py on one page, each in a collapsed block, behind a warning."""
    parts = [textwrap.dedent("""\
        # Reference solutions (spoilers)

        !!! warning "Try the exercise first"
            These are the reference solutions of the notebooks' exercises, one file per notebook
            (`notebooks/solutions/`). Each block replaces the exercise cell of the same name; CI runs every
            notebook with them filled in. The check cell under each exercise tells you what is wrong, and
            where: use it before you look here. Each solution is folded: open it only when you are done.
        """)]
    for nb in learning_path.NOTEBOOKS:
        path = REPO / "notebooks" / "solutions" / (Path(nb.file).stem + ".py")
        if not path.exists():
            continue
        code = path.read_text(encoding="utf-8")
        parts.append(f"## {nb.number} · {nb.title}\n\nExercises of [{nb.file}](../{nb.file}): {nb.exercises}.\n\n"
                     f'??? note "Show the solutions of notebook {nb.number} (`{path.name}`)"\n\n'
                     + textwrap.indent(f"```python\n{code.rstrip()}\n```", "    ") + "\n")
    return "\n".join(parts)


SOLUTIONS_URI = "notebooks/solutions/index.md"


# Short navigation titles; any other page under docs/ is listed under its first heading.
DOCS_TITLES = {"docs/degradation/README.md": "The degradation experiment",
               "docs/degradation/cpu/results.md": "Degradation: the CPU results",
               "docs/distributed.md": "Data-parallel training"}


def heading(uri):
    text = (REPO / uri).read_text(encoding="utf-8")
    m = re.search(r"^# +(.+)$", text, flags=re.M)
    return m.group(1).strip() if m else uri


def on_config(config):
    api = [{"Overview": "api/index.md"}]
    groups = {}
    for module in public_modules():
        top = module.split(".")[1] if "." in module else ""
        if module == PACKAGE:
            api.append({f"{PACKAGE}": api_uri(module)})
        elif is_package(module) or module.count(".") > 1:
            label = f"{module} (package)" if is_package(module) else module
            groups.setdefault(top, []).append({label: api_uri(module)})
        else:
            api.append({module: api_uri(module)})
    for top, entries in groups.items():
        api.append({f"{PACKAGE}.{top}": entries})
    config["nav"] = [
        {"Home": "README.md"},
        {"Learning path": [{"Overview": "notebooks/README.md"}] + learning_path.nav()
         + [{"Reference solutions (spoilers)": SOLUTIONS_URI}]},
        {"Docs": [{DOCS_TITLES.get(uri) or heading(uri): uri} for tree in PAGE_TREES for uri in walk(tree)
                  if uri.endswith(".md")]},
        {"Benchmarks": "benchmarks/README.md"},
        {"API reference": api},
    ]
    return config


@event_priority(100)  # before mkdocs-jupyter's, which turns the notebooks added here into pages
def on_files(files, config):
    notebooks = [f"notebooks/{nb.file}" for nb in learning_path.NOTEBOOKS]
    on_disk = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if sorted(notebooks) != on_disk:
        raise PluginError(f"website/learning_path.py lists {notebooks}, notebooks/ holds {on_disk}")
    uris = set(MARKDOWN_PAGES + notebooks)
    for tree in PAGE_TREES:
        uris |= {u for u in walk(tree) if u.endswith(".md")}
    for uri in sorted(uris):
        files.append(repo_file(config, uri))
    for tree in ASSET_TREES:  # not in the nav, not searched: copied so that the pages' links to them work
        for uri in walk(tree):
            if uri not in uris:
                files.append(repo_file(config, uri, InclusionLevel.NOT_IN_NAV))
    files.append(File.generated(config, SOLUTIONS_URI, content=solutions_page()))
    files.append(File.generated(config, "api/index.md", content=api_index()))
    for module in public_modules():
        files.append(File.generated(config, api_uri(module), content=module_page(module)))
    return files


# ----------------------------------------------------------------------------- links in the pages
LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def on_page_markdown(markdown, page, config, files):
    """Relative links to what the site shows elsewhere: minires/... sources -> their API pages;
    a folder -> its README.md/index.md page."""
    here = posixpath.dirname(page.file.src_uri)

    def fix(m):
        url = m.group(2)
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or not parts.path:
            return m.group(0)
        target = posixpath.normpath(posixpath.join(here, unquote(parts.path)))
        new = None
        if target == PACKAGE or target.startswith(PACKAGE + "/"):
            module = target[:-3] if target.endswith(".py") else target
            module = module.replace("/", ".").removesuffix(".__init__")
            if module in public_modules():
                new = api_uri(module)
        elif (REPO / target).is_dir():
            for index in ("index.md", "README.md"):
                if files.get_file_from_path(f"{target}/{index}") is not None:
                    new = f"{target}/{index}"
                    break
        if new is None:
            return m.group(0)
        rel = posixpath.relpath(new, here or ".")
        return m.group(1) + rel + (f"#{parts.fragment}" if parts.fragment else "") + m.group(3)

    return LINK.sub(fix, markdown)


HREF = re.compile(r'(href=")([^"#:]+\.ipynb)(#[^"]*)?(")')


HEADING = re.compile(r'<h([1-3]) id="([^"]+)">(.*?)(?:<a class="anchor-link"[^>]*>.*?</a>)?</h\1>', re.S)


def notebook_toc(html_text):
    """The page's table of contents from the headings nbconvert wrote (their ids as they are): mkdocs-jupyter's
    own drops a heading's code (``backward()``) from the anchors it links to."""
    from mkdocs.structure.toc import get_toc
    root = {"level": 0, "children": []}
    stack = [root]
    for m in HEADING.finditer(html_text):
        level, name = int(m.group(1)), html.unescape(re.sub(r"<[^>]+>", "", m.group(3))).strip()
        token = {"level": level, "id": m.group(2), "name": name, "children": []}
        while stack[-1]["level"] >= level:
            stack.pop()
        stack[-1]["children"].append(token)
        stack.append(token)
    return get_toc(root["children"])


def on_page_content(html_text, page, config, files):
    """A notebook's links to other notebooks (``02_im2col_convolution.ipynb``) -> their pages; its table
    of contents from its headings."""
    if not page.file.src_uri.endswith(".ipynb"):
        return html_text
    page.toc = notebook_toc(html_text)
    name = posixpath.basename(page.file.src_uri)
    bar = (f'<p class="minires-notebook-source">This page is <code>notebooks/{name}</code> with its saved outputs. '
           f'<a href="{name}" download>Download the notebook</a> and run it with minires installed '
           f'(<code>cd notebooks &amp;&amp; jupyter notebook</code>)'
           + (": its exercises are yours to fill in, and its check cells tell you what is right." if any(
               nb.file == name and nb.exercises for nb in learning_path.NOTEBOOKS) else ".") + '</p>\n')
    html_text = bar + html_text
    here = posixpath.dirname(page.file.src_uri)

    def fix(m):
        target = files.get_file_from_path(posixpath.normpath(posixpath.join(here, unquote(m.group(2)))))
        if target is None:
            return m.group(0)  # left as is: the link check after the build reports it
        return m.group(1) + target.url_relative_to(page.file) + (m.group(3) or "") + m.group(4)

    return HREF.sub(fix, html_text)


def mathjax_url(page):
    depth = page.url.count("/") if page.url else 0
    return posixpath.join(*([".."] * depth + [MATHJAX_DIR, MATHJAX_FILE]))


NBCONVERT_MATHJAX = re.compile(r'<script src="@@MATHJAX@@">\s*</script>')


def on_post_page(output, page, config):
    """MathJax from the site itself, relative to the page: on a notebook page in place of the script
    mkdocs-jupyter names (the placeholder; nbconvert's MathJax 2 configuration beside it is inert under
    MathJax 3), on a Markdown page with math (pymdownx.arithmatex) before </head>."""
    script = f'<script src="{mathjax_url(page)}"></script>'
    if MATHJAX_PLACEHOLDER in output:
        script = MATHJAX_CONFIG % NOTEBOOK_MATH + script
        output, n = NBCONVERT_MATHJAX.subn(lambda m: script, output)
        if n != 1 or MATHJAX_PLACEHOLDER in output:
            raise PluginError(f"{page.file.src_uri}: mkdocs-jupyter's MathJax script tag not found as expected")
        return output
    if 'class="arithmatex"' in output:
        return output.replace("</head>", MATHJAX_CONFIG % MARKDOWN_MATH + script + "\n</head>", 1)
    return output


def on_post_build(config):
    copy_mathjax(Path(config["site_dir"]) / MATHJAX_DIR)
    problems = check_site(Path(config["site_dir"]))
    if problems:
        for p in problems[:50]:
            log.error(p)
        raise PluginError(f"{len(problems)} broken link(s) or external load(s) in the built site (listed above)")


def copy_mathjax(dest):
    """MathJax 3 (``es5/tex-svg-full.js``) from the django-static-mathjax package: a plain copy of MathJax's
    release (no Django needed)."""
    try:
        import mathjax
    except ImportError as e:
        raise PluginError("the site's math needs the django-static-mathjax package: pip install -e '.[docs]'") from e
    src = Path(mathjax.__file__).parent / "static" / "mathjax"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "es5" / MATHJAX_FILE, dest / MATHJAX_FILE)
    shutil.copy2(src / "LICENSE", dest / "LICENSE") if (src / "LICENSE").exists() else None


# ------------------------------------------------------------------------ the built site, checked
class _Refs(HTMLParser):
    LOADS = {("script", "src"), ("img", "src"), ("link", "href"), ("iframe", "src"), ("source", "src"),
             ("video", "src"), ("audio", "src"), ("embed", "src"), ("object", "data")}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])
        for attr in ("href", "src", "data"):
            if attrs.get(attr) is not None:
                self.refs.append((tag, attr, attrs[attr]))


def check_site(site):
    """Every reference of every HTML page: a link to a missing file or id, or a load from another host."""
    problems, parsed = [], {}

    def parse(path):
        if path not in parsed:
            p = _Refs()
            p.feed(path.read_text(encoding="utf-8", errors="replace"))
            parsed[path] = p
        return parsed[path]

    for page in sorted(site.rglob("*.html")):
        rel = page.relative_to(site).as_posix()
        if rel == "404.html":
            continue  # served for any missing URL, so its links are root-relative (/assets/...)
        for tag, attr, url in parse(page).refs:
            parts = urlsplit(html.unescape(url))
            if parts.scheme in ("data", "mailto", "javascript", "blob"):
                continue
            if parts.scheme or parts.netloc:
                if (tag, attr) in _Refs.LOADS:
                    problems.append(f"{rel}: <{tag} {attr}={url!r}> loads from another host")
                continue
            if tag != "a" and (tag, attr) not in _Refs.LOADS:
                continue  # e.g. <form action>, <use href> of inline SVG sprites
            if not parts.path:  # a fragment on this page
                if parts.fragment and tag == "a" and parts.fragment not in parse(page).ids:
                    problems.append(f"{rel}: link to #{parts.fragment}: no such id on the page")
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{rel}: {attr}={url!r}: {os.path.relpath(target, site)} does not exist")
            elif parts.fragment and target.suffix == ".html" and parts.fragment not in parse(target).ids:
                problems.append(f"{rel}: link to {url!r}: no id {parts.fragment!r} in {target.relative_to(site)}")
    return problems
