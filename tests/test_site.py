"""The course as a website (mkdocs.yml, website/), read in a real browser: headless Chromium (Debian's
``chromium`` and ``chromium-driver``, through Selenium) opens every page from a static server on
127.0.0.1 and checks what a reader would see.

Selected with ``-m site``. The site is the one in ``$MINIRES_SITE_DIR`` when set (CI's ``.ci/site`` builds it
with the README's command first), else the test builds it into a temporary folder. Without Chromium,
chromedriver, Selenium or the docs extra the tests skip with the reason, unless ``MINIRES_SITE_REQUIRED=1``
(``.ci/site``), which turns every such skip into a failure. Screenshots of the home page, a notebook and an
API page go to ``$MINIRES_SITE_SCREENSHOTS`` (else a temporary folder); the test prints where.
"""
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.request import urlopen

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "website"))
import learning_path  # noqa: E402  (website/learning_path.py: the notebooks, in order)

from notebook_tools import REPO, solution_blocks  # noqa: E402

pytestmark = pytest.mark.site

REQUIRED = os.environ.get("MINIRES_SITE_REQUIRED") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
NOTEBOOK_PAGES = {nb.file: f"notebooks/{nb.file[:-6]}/" for nb in learning_path.NOTEBOOKS}
MATH_WAIT_S = 30
# What each screenshot shows: the home page, a notebook with figures and math, an op's API page.
SCREENSHOTS = {"home.png": "", "notebook_02_im2col.png": "notebooks/02_im2col_convolution/",
               "api_minires_ops_norm.png": "api/minires.ops.norm/"}


def unavailable(reason):
    """Skip, or fail where the site test must run (CI's .ci/site)."""
    if REQUIRED:
        pytest.fail(f"MINIRES_SITE_REQUIRED=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory):
    if os.environ.get("MINIRES_SITE_DIR"):
        site = Path(os.environ["MINIRES_SITE_DIR"]).resolve()
        if not (site / "index.html").exists():
            pytest.fail(f"MINIRES_SITE_DIR={site} holds no built site (run the README's build command)")
        return site
    if shutil.which("mkdocs") is None and not _importable("mkdocs"):
        unavailable("the docs extra is not installed (pip install -e '.[docs]')")
    site = tmp_path_factory.mktemp("site") / "site"
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, f"the site's build failed:\n{run.stdout}\n{run.stderr}"
    return site


def _importable(name):
    import importlib.util
    return importlib.util.find_spec(name) is not None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(site_dir):
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    if not _importable("selenium"):
        unavailable("Selenium is not installed (pip install -e '.[docs]')")
    if CHROMIUM is None or CHROMEDRIVER is None:
        unavailable("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--hide-scrollbars", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--metrics-recording-only"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def requests_made(driver):
    """The URLs of every request since the last call (Chrome's performance log: Network.requestWillBeSent)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def wait_for(driver, script, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if driver.execute_script(script):
            return True
        time.sleep(0.1)
    return False


# MathJax 3 sets window.MathJax to a configuration object first; startup.promise settles once it has typeset.
MATHJAX_DONE = """
if (!window.MathJax) return true;
if (!MathJax.startup || !MathJax.startup.promise) return false;
if (window.__mathDone === undefined) {
  window.__mathDone = false;
  MathJax.startup.promise.then(() => { window.__mathDone = true; }, () => { window.__mathDone = 'failed'; });
}
return window.__mathDone === true;
"""
PAGE_FACTS = """
const imgs = Array.from(document.querySelectorAll('article img, .md-content img'));
const article = document.querySelector('article') || document.body;
return {
  title: document.title,
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  images: imgs.map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0,
                          width: i.getBoundingClientRect().width, output: !!i.closest('.jp-OutputArea-output')})),
  ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
  text: article.innerText,
  source: article.textContent,
  toc_text: Array.from(document.querySelectorAll('.md-sidebar--secondary .md-nav__link'))
                 .map(e => e.innerText).join('\\n'),
  markdown_text: Array.from(document.querySelectorAll('.jp-MarkdownCell, .md-typeset > p, .md-typeset li'))
                      .map(e => e.innerText).join('\\n'),
  math: document.querySelectorAll('mjx-container').length,
  math_errors: document.querySelectorAll('mjx-merror, [data-mjx-error]').length,
  tex_sources: document.querySelectorAll('.arithmatex').length,
  mathjax: !!window.MathJax,
};
"""


@pytest.fixture(scope="module")
def pages(browser, site_dir, server):
    """Every page of the site (but 404.html), opened in the browser: what it requested, logged and shows."""
    paths = sorted(p.relative_to(site_dir).as_posix() for p in site_dir.rglob("index.html"))
    assert len(paths) > 20, f"only {len(paths)} pages in {site_dir}"
    requests_made(browser)
    browser.get_log("browser")
    seen = {}
    for path in paths:
        url = server + path[:-len("index.html")]
        browser.get(url)
        wait_for(browser, "return document.readyState === 'complete';", 30)
        math_done = wait_for(browser, MATHJAX_DONE, MATH_WAIT_S)
        facts = browser.execute_script(PAGE_FACTS)
        facts["math_done"] = math_done
        facts["requests"] = requests_made(browser)
        facts["console"] = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        seen[path[:-len("index.html")]] = facts
    return seen


def test_every_request_goes_to_the_local_server(pages, server):
    local = urlsplit(server).netloc
    outside = {}
    for page, facts in pages.items():
        hosts = {urlsplit(u).netloc for u in facts["requests"] if urlsplit(u).scheme in ("http", "https", "ws", "wss")}
        assert hosts, f"{page}: no request recorded (is the performance log on?)"
        if hosts - {local}:
            outside[page] = sorted(hosts - {local})
    assert not outside, f"pages that load from another host: {outside}"


def test_no_console_errors(pages):
    errors = {page: [e["message"] for e in facts["console"]] for page, facts in pages.items() if facts["console"]}
    assert not errors, f"console errors: {json.dumps(errors, indent=1)[:4000]}"


def test_no_broken_link_or_image(pages, server):
    broken, status = [], {}
    for page, facts in pages.items():
        for img in facts["images"]:
            if not img["ok"]:
                broken.append(f"{page}: image {img['src'][:100]} did not load")
        for link in facts["links"]:
            parts = urlsplit(link)
            if not link.startswith(server):
                continue  # a link to another site is not loaded by the page; pages cannot check it offline
            target = link.split("#")[0]
            if target not in status:
                try:
                    with urlopen(target, timeout=10) as response:
                        status[target] = response.status
                except Exception as e:  # HTTPError 404 and the like
                    status[target] = getattr(e, "code", repr(e))
            if status[target] != 200:
                broken.append(f"{page}: link {link} -> {status[target]}")
            elif parts.fragment:
                target_page = target[len(server):]
                ids = pages.get(target_page, {}).get("ids") if target_page in pages else None
                if ids is not None and parts.fragment not in ids:
                    broken.append(f"{page}: link {link}: no id {parts.fragment!r} on {target_page or 'home'}")
    assert not broken, "\n".join(broken[:40])


def test_math_is_rendered(pages):
    with_math = {page: facts for page, facts in pages.items() if facts["tex_sources"] or facts["math"]}
    import nbformat
    for file, page in NOTEBOOK_PAGES.items():
        nb = nbformat.read(REPO / "notebooks" / file, as_version=4)
        formulas = sum(len(re.findall(r"\$\$.+?\$\$|\$[^$\n]+\$", c.source, flags=re.S))
                       for c in nb.cells if c.cell_type == "markdown")
        if formulas:
            assert page in with_math, f"{page}: the notebook has {formulas} formulas, the page rendered none"
            assert pages[page]["math"] >= formulas, f"{page}: {pages[page]['math']} of {formulas} formulas rendered"
    assert "" in with_math, "the home page (README: $x_L = x_l + \\sum F$) rendered no math"
    for page, facts in with_math.items():
        assert facts["mathjax"] and facts["math_done"], f"{page}: MathJax did not load or finish"
        assert facts["math"] > 0, f"{page}: no rendered math elements"
        assert facts["math_errors"] == 0, f"{page}: {facts['math_errors']} math errors"
        raw = re.findall(r"\$\$|\$\\[a-zA-Z]|\\\(|\\\[|\\begin\{", facts["markdown_text"])
        assert not raw, f"{page}: raw TeX left in the text: {raw[:5]}"
        assert "$" not in facts["toc_text"], f"{page}: raw TeX in the table of contents: {facts['toc_text'][:300]}"


def test_each_notebook_page_shows_its_figures(pages):
    import nbformat
    for file, page in NOTEBOOK_PAGES.items():
        nb = nbformat.read(REPO / "notebooks" / file, as_version=4)
        expected = sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
                       for out in cell.get("outputs", []))
        shown = [img for img in pages[page]["images"] if img["output"]]
        assert len(shown) == expected, f"{page}: {len(shown)} figures shown, the notebook has {expected}"
        assert all(img["ok"] and img["width"] > 100 for img in shown), f"{page}: a figure is not shown: {shown}"


def test_the_learning_path_is_the_navigation(pages):
    home = pages[""]["text"]
    for nb in learning_path.NOTEBOOKS:
        assert NOTEBOOK_PAGES[nb.file] in pages
        title = pages[NOTEBOOK_PAGES[nb.file]]["title"]
        assert title.startswith(f"{nb.number} · {nb.title}"), f"{nb.file}: page title {title!r}"
    links = pages["notebooks/"]["links"]
    order = [next(i for i, link in enumerate(links) if link.endswith("/" + NOTEBOOK_PAGES[nb.file]))
             for nb in learning_path.NOTEBOOKS]
    assert order == sorted(order), "the navigation does not list the notebooks in the learning path's order"
    assert "minires" in home


def test_exercises_stay_exercises(pages):
    import nbformat
    from notebook_tools import exercise_cells
    solutions_page = pages["notebooks/solutions/"]["source"]  # textContent: the folded blocks too
    assert "Reference solutions" in solutions_page and "Try the exercise first" in solutions_page
    for file, page in NOTEBOOK_PAGES.items():
        nb = nbformat.read(REPO / "notebooks" / file, as_version=4)
        cells, text = exercise_cells(nb), pages[page]["source"]
        notebook_text = "\n".join(c.source for c in nb.cells)
        for name, cell in cells.items():
            first = next(line for line in cell.source.splitlines() if line.strip())
            assert first.strip() in text, f"{page}: exercise {name}'s cell is not on the page"
        checks = [out.get("text", "") for c in nb.cells for out in c.get("outputs", [])
                  if "not done yet" in out.get("text", "")]
        for check in checks:
            assert check.strip().splitlines()[0] in text, f"{page}: the check message {check[:60]!r} is missing"
        for name, solution in solution_blocks(file).items():
            telltale = [line.strip() for line in solution.splitlines()
                        if len(line.strip()) > 25 and line.strip() not in notebook_text]
            assert telltale, f"{file}: no line of solution {name} to look for"
            shown = [line for line in telltale if line in text]
            assert not shown, f"{page}: the solution of {name} is on the exercise page: {shown[:2]}"
            assert telltale[0] in solutions_page, f"the solutions page lacks {name}"


def test_the_api_reference_lists_the_public_ops_and_models(pages):
    api = {page: facts for page, facts in pages.items() if page.startswith("api/")}
    ids = {i for facts in api.values() for i in facts["ids"]}
    for name in ("minires.functional.conv2d", "minires.functional.batch_norm", "minires.models.blocks.BasicBlock",
                 "minires.models.cifar.cifar_resnet", "minires.ops.conv.Conv2d", "minires.nn.layers.BatchNorm2d",
                 "minires.engine.Tensor"):
        assert name in ids, f"the API reference has no entry {name}"
    index = pages["api/"]["text"]
    modules = sorted(p.relative_to(REPO).with_suffix("").as_posix().replace("/", ".").removesuffix(".__init__")
                     for p in (REPO / "minires").rglob("*.py"))
    for module in modules:
        if not any(part.startswith("_") for part in module.split(".")):
            assert module in index, f"the API index does not list {module}"
            assert f"api/{module}/" in pages, f"no API page for {module}"
    # the docstrings' formulas stay plain-text blocks, line for line
    norm = pages["api/minires.ops.norm/"]["text"]
    assert "x_hat = (x - mean) / sqrt(var + eps),   y = gamma * x_hat + beta" in norm


def test_search_finds_im2col(pages, server, browser):
    from selenium.webdriver.common.by import By
    browser.get(server)
    wait_for(browser, "return document.readyState === 'complete';", 30)
    box = browser.find_element(By.CSS_SELECTOR, "input.md-search__input")
    box.click()
    box.send_keys("im2col")
    assert wait_for(browser, "return document.querySelectorAll('.md-search-result__item').length > 0;", 30), \
        "search for im2col found nothing"
    results = browser.execute_script(
        "return Array.from(document.querySelectorAll('.md-search-result__item a')).map(a => a.href);")
    assert any("02_im2col_convolution" in r for r in results), f"im2col's notebook not among {results[:10]}"
    hosts = {urlsplit(u).netloc for u in requests_made(browser) if urlsplit(u).scheme.startswith("http")}
    assert hosts == {urlsplit(server).netloc}, f"search made requests to {hosts}"


def test_screenshots(pages, server, browser, tmp_path_factory, capsys):
    folder = Path(os.environ.get("MINIRES_SITE_SCREENSHOTS") or tmp_path_factory.mktemp("site-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    for name, page in SCREENSHOTS.items():
        browser.get(urljoin(server, page))
        wait_for(browser, "return document.readyState === 'complete';", 30)
        wait_for(browser, MATHJAX_DONE, MATH_WAIT_S)
        if page.startswith("notebooks/"):  # the first figure, below the introduction
            browser.execute_script("const i = document.querySelector('.jp-OutputArea-output img');"
                                   "if (i) i.scrollIntoView({block: 'center'});")
        elif page.startswith("api/"):  # the op's class: its docstring with the formulas' plain-text block
            browser.execute_script("const e = document.getElementById('minires.ops.norm.BatchNorm');"
                                   "if (e) e.scrollIntoView({block: 'start'});")
        time.sleep(0.3)
        assert browser.save_screenshot(str(folder / name)), f"no screenshot of {page}"
        assert (folder / name).stat().st_size > 10_000
    with capsys.disabled():
        print(f"\nsite screenshots: {folder} ({', '.join(SCREENSHOTS)})")
