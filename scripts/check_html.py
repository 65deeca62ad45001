#!/usr/bin/env python
"""Open every page of the built book in headless Chromium and check it as a reader sees it.

For ``index.html`` and each page of ``_toc.yml`` the check fails, naming the
page and the defect, when:

- the page does not load, an image served by the book does not decode, a
  request to the book's own server fails, or JavaScript throws (except the
  known harmless errors below);
- an output shows a Python traceback, is a stderr output, or says "Warning:";
- a **raw markdown table** is shown as text (a paragraph or output holding a
  ``|---|`` / ``| --- |`` pipe row: the renderer did not make it a table);
- math is wrong: a **MathJax error** (``merror``, or an undefined control
  sequence that MathJax shows in red), or math left untypeset once MathJax's
  startup promise has resolved (MathJax is vendored, so this works offline);
- a **bare numeric output**: a cell's result (``execute_result``) that is only
  a number such as ``22`` or ``0.0873`` (a stray last expression);
- a **clipped output line**: a text output, or a table in an output, wider
  than the column (scrollWidth > clientWidth) so that the reader must scroll
  sideways; code input cells may scroll;
- an **internal reference**: the page text names the authors' machine or
  repository internals (``shared/research``, ``/work/``, ``/tmp/``,
  ``site-packages``, "research pilot", "research notes"; ``.venv`` and
  ``_build/`` outside code, where they are commands a reader may run);
- a **visible solution**: "BEGIN SOLUTION" in a notebook cell or the code of
  a cell tagged ``exercise``/``solution`` visible, or a ``{solution}``
  admonition open (scripts/build_html.py collapses them behind a toggle);
- where the executed notebook stored widget state, the page lacks the
  widget-state script or its widgets do not render.

Every request that leaves 127.0.0.1 is blocked and reported, so the check
proves the pages work offline.  A full-page screenshot of each page goes to
``BUILD/screenshots/``.

The page inspection (:func:`inspect_pages`) works on any list of HTML files
under a folder, which is how tests/test_check_html.py seeds each defect.
Uses the system Chromium (``/usr/bin/chromium``, Debian package
``chromium``, or the browser named by ``GANBOOK_CHROMIUM``) through
Playwright; never ``playwright install``.

    python scripts/check_html.py                       # _build/site/_build/html
    python scripts/check_html.py --build-dir _build/test
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import http.server
import json
import os
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_chapters import REPO, ToolingError, read_toc  # noqa: E402

# Debian's chromium by default; GANBOOK_CHROMIUM names another Chromium-based browser
# (the Pages workflow uses the runner's /usr/bin/google-chrome).
CHROMIUM = os.environ.get("GANBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
# Page errors known to be harmless, as (message part, stack part):
#  - sphinx-thebe declares THEBE_JS_URL twice on every page;
#  - @jupyter-widgets/controls 2 (inside embed-amd.js) typesets widget labels
#    with the MathJax 2 API (MathJax.Hub.Queue) while the book loads MathJax 3:
#    the label's math is not typeset, the widget itself renders.
HARMLESS_PAGE_ERRORS = (("THEBE_JS_URL", ""), ("reading 'Queue'", "embed-amd.js"))
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
MATHJAX_TIMEOUT_MS = 20000

# Words that name the authors' machine or the repository's internals. ANYWHERE: in
# any text of the page; OUTSIDE_CODE: in prose and outputs, not in code a reader runs.
INTERNAL_ANYWHERE = [r"shared/research", r"/work/", r"/tmp/", r"site-packages", r"research pilot",
                     r"research notes"]
INTERNAL_OUTSIDE_CODE = [r"\.venv\b", r"(^|[\s`'\"(/])_build/"]

# Runs in the page once images, MathJax and fonts have settled; returns every finding.
INSPECT_JS = r"""
async ([anywhere, outsideCode, mathTimeout]) => {
  const visible = el => !!el && el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})
                        && el.getClientRects().length > 0;
  const short = (t, n = 160) => (t || '').replace(/\s+/g, ' ').trim().slice(0, n);
  const found = {mathErrors: [], untypeset: [], rawTables: [], tracebacks: [], stderr: [], warnings: [],
                 bareNumbers: [], clipped: [], internal: [], solutions: []};

  // --- math: wait for MathJax's startup promise (the initial typeset), then read its results
  let mathjax = 'absent';
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    const timeout = new Promise(r => setTimeout(() => r('timeout'), mathTimeout));
    mathjax = await Promise.race([MathJax.startup.promise.then(() => 'ok', e => 'failed: ' + e), timeout]);
  }
  if (mathjax === 'ok' && MathJax.startup.document && MathJax.startup.toMML) {
    for (const item of MathJax.startup.document.math) {
      let mml = '';
      try { mml = MathJax.startup.toMML(item.root); } catch (e) { mml = ''; }
      const err = mml.match(/<merror[^>]*data-mjx-error="([^"]*)"/) || (/<merror/.test(mml) ? ['', 'error'] : null);
      const undef = mml.match(/<mtext[^>]*mathcolor="red"[^>]*>(\\[^<]*)<\/mtext>/);
      if (err) found.mathErrors.push(`${err[1]} in: ${short(item.math, 120)}`);
      else if (undef) found.mathErrors.push(`undefined control sequence ${undef[1]} in: ${short(item.math, 120)}`);
    }
  }
  for (const el of document.querySelectorAll('mjx-merror')) {
    if (!found.mathErrors.length) found.mathErrors.push(el.getAttribute('data-mjx-error') || 'mjx-merror');
  }
  for (const el of document.querySelectorAll('.math, span.math, div.math')) {
    if (!el.querySelector('mjx-container')) found.untypeset.push(short(el.textContent, 120));
  }

  // --- outputs
  const outputs = Array.from(document.querySelectorAll('.cell_output'));
  for (const out of outputs) {
    for (const el of out.querySelectorAll('.output')) {
      const text = el.innerText || el.textContent || '';
      if (el.classList.contains('traceback') || text.includes('Traceback (most recent call last)')) {
        found.tracebacks.push(short(text, 400));
      } else if (el.classList.contains('stderr')) {
        found.stderr.push(short(text));
      } else if (/Warning:/.test(text)) {
        found.warnings.push(short(text.slice(Math.max(0, text.search(/\w*Warning:/)))));
      }
    }
    for (const el of out.querySelectorAll('.output.text_plain')) {
      const text = (el.innerText || el.textContent || '').trim();
      if (/^(np\.\w+\(|tensor\()?[-+]?(\d[\d_]*\.?\d*|\.\d+)([eE][-+]?\d+)?\)?$|^[-+]?(nan|inf)$/i.test(text)) {
        found.bareNumbers.push(text);
      }
    }
    // text outputs must fit the column; tables in outputs too (nothing hidden sideways)
    const wide = Array.from(out.querySelectorAll(
        '.output.stream, .output.text_plain, .output.stderr, .output pre, .pst-scrollable-table-container, table'));
    for (const el of wide) {
      if (!visible(el) || el.scrollWidth <= el.clientWidth + 1) continue;
      const isTable = el.matches('table, .pst-scrollable-table-container');
      const lines = (el.innerText || '').split('\n');
      const longest = lines.reduce((a, b) => (b.length > a.length ? b : a), '');
      found.clipped.push(`${isTable ? 'table' : 'text'} ${el.scrollWidth}px wide in a ${el.clientWidth}px column: `
                         + short(isTable ? el.innerText : longest, 120));
      break;  // one per output
    }
  }

  // --- raw markdown tables: a pipe separator row in a paragraph or an output
  const pipeRow = /\|\s*:?-{3,}:?\s*\|/;
  for (const el of document.querySelectorAll('p, .cell_output pre')) {
    const text = el.innerText || el.textContent || '';
    if (pipeRow.test(text)) found.rawTables.push(short(text, 120));
  }

  // --- internal references in the page text (scripts and styles excluded)
  const root = document.querySelector('article') || document.querySelector('main') || document.body;
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const any = anywhere.map(p => new RegExp(p, 'i')), prose = outsideCode.map(p => new RegExp(p, 'i'));
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest('script, style, noscript')) continue;
    const text = node.textContent;
    const inCode = !!parent.closest('code, pre, .cell_input') && !parent.closest('.cell_output');
    for (const re of any.concat(inCode ? [] : prose)) {
      const m = re.exec(text);
      if (m) {
        const at = Math.max(0, m.index - 40);
        found.internal.push(`"${m[0].trim()}" in "${short(text.slice(at, m.index + m[0].length + 40), 100)}"`);
        break;
      }
    }
  }

  // --- solutions must sit behind a closed toggle
  // (in notebook cells: the course page may show the markers in a prose code block)
  const solWalker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = solWalker.nextNode(); node; node = solWalker.nextNode()) {
    if (node.textContent.includes('BEGIN SOLUTION') && node.parentElement.closest('.cell')
        && visible(node.parentElement)) {
      found.solutions.push('"BEGIN SOLUTION" visible: ' + short(node.parentElement.closest('pre, p, div').innerText, 100));
    }
  }
  for (const el of document.querySelectorAll('.tag_exercise .cell_input, .tag_solution .cell_input')) {
    if (visible(el) && !found.solutions.length) found.solutions.push('exercise cell code visible: ' + short(el.innerText, 100));
  }
  for (const adm of document.querySelectorAll('.solution')) {
    const body = Array.from(adm.children).filter(c => !c.matches('.admonition-title, summary, button'));
    if (body.some(visible)) {
      found.solutions.push('solution open: ' + short((adm.querySelector('.admonition-title') || adm).innerText, 100));
    }
  }

  const imgs = Array.from(document.images).map(i => ({src: i.currentSrc || i.src,
      ok: i.complete && i.naturalWidth > 0,
      external: /^https?:$/.test(new URL(i.currentSrc || i.src, location.href).protocol)
                && new URL(i.currentSrc || i.src, location.href).hostname !== location.hostname}));
  return {imgs, mathjax, ...found,
          widgetState: document.querySelectorAll('script[type="%s"]').length,
          widgetViews: document.querySelectorAll('script[type="%s"]').length,
          widgetsRendered: document.querySelectorAll('.jupyter-widgets').length};
}
""".replace("%s", WIDGET_STATE_MIME, 1).replace("%s", WIDGET_VIEW_MIME, 1)

IMAGES_SETTLED_JS = """
async () => {
  for (const img of Array.from(document.images)) {
    img.loading = 'eager';
    if (!img.complete) {
      img.scrollIntoView();
      await new Promise(r => { img.addEventListener('load', r, {once: true});
                               img.addEventListener('error', r, {once: true});
                               setTimeout(r, 5000); });
    }
  }
  if (document.fonts) await document.fonts.ready;
  window.scrollTo(0, 0);
}
"""

# (key in the page's findings, defect name in the failure message, how many examples to show)
DEFECTS = [
    ("tracebacks", "traceback output", 1),
    ("stderr", "stderr output (warnings or progress on stderr)", 2),
    ("warnings", "warning shown in an output", 2),
    ("rawTables", "raw markdown table (rendered as text, not as a table)", 2),
    ("mathErrors", "MathJax error", 3),
    ("untypeset", "math not typeset by MathJax", 2),
    ("bareNumbers", "bare numeric output (a stray last expression)", 5),
    ("clipped", "clipped output line (wider than the column)", 3),
    ("internal", "internal reference in the page text", 3),
    ("solutions", "visible solution (not collapsed behind a toggle)", 2),
]


@dataclasses.dataclass
class Page:
    """One page to inspect: ``rel`` is its path under the served folder."""

    rel: str
    name: str = ""
    want_widget_state: bool = False
    want_widget_views: bool = False


def widget_expectations(site: Path, entry) -> tuple[bool, bool]:
    """(stored widget state, displays a widget view) for a staged notebook."""
    path = site / (entry.name + ".ipynb")
    if not path.is_file():
        return False, False
    nb = json.loads(path.read_text())
    state = nb.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state")
    views = any(WIDGET_VIEW_MIME in out.get("data", {})
                for cell in nb.get("cells", []) for out in cell.get("outputs", []))
    return bool(state), bool(state) and views


@functools.lru_cache(maxsize=None)
def _quiet_handler(directory: str):
    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=directory, **kw)

        def log_message(self, *a):  # keep the CI log readable
            pass

    return Handler


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _quiet_handler(str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _problems(info: dict, page: Page, errors: list[tuple[str, str]], failed_requests: list[str]) -> list[str]:
    """The failure messages for one page from what the browser saw."""
    problems = []
    bad_imgs = [i["src"] for i in info["imgs"] if not i["ok"] and not i["external"]]
    if bad_imgs:
        problems.append(f"{len(bad_imgs)} image(s) did not load: {bad_imgs[:3]}")
    if failed_requests:
        problems.append(f"{len(failed_requests)} request(s) to the book failed: {failed_requests[:3]}")
    for key, label, show in DEFECTS:
        items = info[key]
        if items:
            more = f" (and {len(items) - show} more)" if len(items) > show else ""
            problems.append(f"{label}: {len(items)}, e.g. " + " | ".join(items[:show]) + more)
    if info["mathjax"] not in ("ok", "absent"):
        problems.append(f"MathJax did not finish typesetting ({info['mathjax']})")
    if page.want_widget_state and not info["widgetState"]:
        problems.append("the notebook has widget state but the page has no widget-state script")
    if page.want_widget_views and not info["widgetsRendered"]:
        problems.append("widgets did not render (vendored widget JS not loaded?)")
    real_errors = [msg for msg, stack in errors
                   if not any(m in msg and s in stack for m, s in HARMLESS_PAGE_ERRORS)]
    if real_errors:
        problems.append(f"JavaScript error(s): {real_errors[:3]}")
    return problems


def inspect_pages(root: Path, pages: list[Page], shots: Path | None = None,
                  timeout_ms: int = 30000) -> tuple[list[str], list[str]]:
    """Serve ``root`` on 127.0.0.1, open each page in Chromium; returns (failures, report lines).

    A failure reads ``"<page>: <defect>: <count>, e.g. <examples>"``.
    """
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        raise ToolingError(f"{CHROMIUM} not found: `apt-get install -y chromium` (make venv does it as root)")
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    failures, report, blocked, external_imgs = [], [], set(), set()
    server, base = serve(root)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})

            def route(r):
                if urlparse(r.request.url).hostname in ("127.0.0.1", None):
                    return r.continue_()
                blocked.add(urlparse(r.request.url).hostname)
                return r.abort()

            context.route("**/*", route)
            for pg in pages:
                t0 = time.perf_counter()
                page = context.new_page()
                errors: list[tuple[str, str]] = []
                failed: list[str] = []
                page.on("pageerror", lambda exc, errors=errors: errors.append((str(exc), exc.stack or "")))

                def on_response(resp, failed=failed):
                    url = urlparse(resp.url)
                    if url.hostname == "127.0.0.1" and resp.status >= 400 and not url.path.endswith("favicon.ico"):
                        failed.append(f"{resp.status} {url.path}")

                page.on("response", on_response)
                problems = []
                resp = page.goto(base + pg.rel, wait_until="load", timeout=timeout_ms)
                if resp is None or not resp.ok:
                    problems.append(f"HTTP {resp.status if resp else 'no response'}")
                if pg.rel == "index.html":  # JB1's index.html is a meta-refresh to the root page
                    try:
                        page.wait_for_url(lambda url: not url.endswith("index.html"), timeout=3000)
                        page.wait_for_load_state("load")
                    except Exception:
                        pass  # a plain index page
                page.evaluate(IMAGES_SETTLED_JS)
                if pg.want_widget_views:
                    try:
                        page.wait_for_selector(".jupyter-widgets", timeout=10000)
                    except Exception:
                        pass  # reported below
                info = page.evaluate(INSPECT_JS, [INTERNAL_ANYWHERE, INTERNAL_OUTSIDE_CODE, MATHJAX_TIMEOUT_MS])
                external_imgs.update(i["src"] for i in info["imgs"] if i["external"])
                problems += _problems(info, pg, errors, failed)
                if shots is not None:
                    try:  # let the theme finish its layout before the picture
                        page.wait_for_load_state("networkidle", timeout=5000)
                    except Exception:
                        pass
                    shot = shots / ((pg.name or Path(pg.rel).stem).replace("/", "__") + ".png")
                    page.screenshot(path=str(shot), full_page=True)
                page.close()
                status = "FAIL" if problems else "ok"
                report.append(f"{status:4s} {pg.rel:40s} imgs={len(info['imgs']):3d} "
                              f"widgets={info['widgetsRendered']:3d} {time.perf_counter() - t0:5.1f} s")
                failures += [f"{pg.rel}: {msg}" for msg in problems]
            browser.close()
    finally:
        server.shutdown()
    if blocked:
        report.append("blocked (offline check) requests to: " + ", ".join(sorted(blocked)))
    if external_imgs:
        report.append("external images, not checked offline: "
                      + ", ".join(sorted(u[:100] for u in external_imgs)))
    if shots is not None:
        report.append(f"screenshots: {shots}")
    return failures, report


def check_pages(build_dir: Path, timeout_ms: int = 30000) -> tuple[list[str], list[str]]:
    """Check ``index.html`` and every toc page of the book built in ``build_dir``."""
    site = build_dir / "site"
    html = site / "_build" / "html"
    if not (html / "index.html").is_file():
        raise ToolingError(f"no built book at {html}: run scripts/build_html.py first")
    pages = [Page("index.html", "index")]
    for e in read_toc(REPO):
        state, views = widget_expectations(site, e)
        pages.append(Page(e.html, e.name, state, views))
    return inspect_pages(html, pages, build_dir / "screenshots", timeout_ms)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", type=Path, default=REPO / "_build",
                    help="holds site/_build/html (input) and screenshots/ (output); default _build")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        failures, report = check_pages(args.build_dir.resolve())
    except ToolingError as err:
        print(f"check_html: error: {err}", file=sys.stderr)
        return 1
    print("\n".join(report))
    print(f"checked in {time.perf_counter() - t0:.1f} s")
    if failures:
        print("\ncheck_html: FAILED\n" + "\n".join("  " + f for f in failures), file=sys.stderr)
        return 1
    print("check_html: all pages ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
