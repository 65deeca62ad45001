#!/usr/bin/env python
"""Open every page of the built book in headless Chromium and check it.

For ``index.html`` and each page of ``_toc.yml``: the page loads; every
``<img>`` served by the book decoded (naturalWidth > 0; external ones such as
the Colab badge cannot load offline and are only listed); no Python traceback
is shown (error outputs, outputs holding "Traceback (most recent call
last)"); no JavaScript error except the known harmless ones below; and where
the executed notebook stored widget state, the page carries the widget-state
script and, if it displays widgets, they render (the vendored widget JS works
offline).  Every request that leaves 127.0.0.1 is blocked and reported, so the
check proves the pages work offline (math is the exception: MathJax comes
from its CDN and stays untypeset here).  A full-page screenshot of each page
goes to ``BUILD/screenshots/``.

Uses the system Chromium (``/usr/bin/chromium``, Debian package
``chromium``) through Playwright; never ``playwright install``.

    python scripts/check_html.py                       # _build/site/_build/html
    python scripts/check_html.py --build-dir _build/test
"""
from __future__ import annotations

import argparse
import functools
import http.server
import json
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_chapters import REPO, ToolingError, read_toc  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
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

# Runs in the page: images that failed, and the text of traceback-like outputs.
INSPECT_JS = """
() => {
  const imgs = Array.from(document.images).map(i => ({src: i.currentSrc || i.src,
      ok: i.complete && i.naturalWidth > 0,
      external: /^https?:$/.test(new URL(i.currentSrc || i.src, location.href).protocol)
                && new URL(i.currentSrc || i.src, location.href).hostname !== location.hostname}));
  const outputs = Array.from(document.querySelectorAll(
      '.output.traceback, .output.stderr, .cell_output .output, div.cell_output pre'));
  const tracebacks = [];
  for (const el of outputs) {
    const text = el.innerText || '';
    if (el.classList.contains('traceback') || text.includes('Traceback (most recent call last)')) {
      tracebacks.push(text.slice(0, 400));
    }
  }
  return {imgs, tracebacks,
          widgetState: document.querySelectorAll('script[type="%s"]').length,
          widgetViews: document.querySelectorAll('script[type="%s"]').length,
          widgetsRendered: document.querySelectorAll('.jupyter-widgets').length};
}
""" % (WIDGET_STATE_MIME, WIDGET_VIEW_MIME)

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
  window.scrollTo(0, 0);
}
"""


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


def check_pages(build_dir: Path, timeout_ms: int = 30000) -> tuple[list[str], list[str]]:
    """Returns (failures, report lines)."""
    from playwright.sync_api import sync_playwright

    site = build_dir / "site"
    html = site / "_build" / "html"
    if not (html / "index.html").is_file():
        raise ToolingError(f"no built book at {html}: run scripts/build_html.py first")
    if not Path(CHROMIUM).is_file():
        raise ToolingError(f"{CHROMIUM} not found: `apt-get install -y chromium` (make venv does it as root)")
    shots = build_dir / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    entries = read_toc(REPO)
    pages = [("index", "index.html", None)] + [(e.name, e.html, e) for e in entries]
    failures, report, blocked, external_imgs = [], [], set(), set()
    server, base = serve(html)
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
            for name, rel, entry in pages:
                t0 = time.perf_counter()
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc, errors=errors: errors.append((str(exc), exc.stack or "")))
                problems = []
                resp = page.goto(base + rel, wait_until="load", timeout=timeout_ms)
                if resp is None or not resp.ok:
                    problems.append(f"HTTP {resp.status if resp else 'no response'}")
                if rel == "index.html":  # JB1's index.html is a meta-refresh to the root page
                    page.wait_for_url(lambda url: not url.endswith("index.html"), timeout=timeout_ms)
                    page.wait_for_load_state("load")
                page.evaluate(IMAGES_SETTLED_JS)
                want_state, want_views = widget_expectations(site, entry) if entry else (False, False)
                if want_views:
                    try:
                        page.wait_for_selector(".jupyter-widgets", timeout=10000)
                    except Exception:
                        pass  # reported below
                info = page.evaluate(INSPECT_JS)
                bad_imgs = [i["src"] for i in info["imgs"] if not i["ok"] and not i["external"]]
                external_imgs.update(i["src"] for i in info["imgs"] if i["external"])
                if bad_imgs:
                    problems.append(f"{len(bad_imgs)} image(s) did not load: {bad_imgs[:3]}")
                if info["tracebacks"]:
                    problems.append(f"{len(info['tracebacks'])} traceback output(s), first:\n"
                                    + info["tracebacks"][0])
                if want_state and not info["widgetState"]:
                    problems.append("the notebook has widget state but the page has no widget-state script")
                if want_views and not info["widgetsRendered"]:
                    problems.append("widgets did not render (vendored widget JS not loaded?)")
                real_errors = [msg for msg, stack in errors
                               if not any(m in msg and s in stack for m, s in HARMLESS_PAGE_ERRORS)]
                if real_errors:
                    problems.append(f"JavaScript error(s): {real_errors[:3]}")
                try:  # let the theme finish its layout before the picture
                    page.wait_for_load_state("networkidle", timeout=5000)
                except Exception:
                    pass
                shot = shots / (name.replace("/", "__") + ".png")
                page.screenshot(path=str(shot), full_page=True)
                page.close()
                status = "FAIL" if problems else "ok"
                report.append(f"{status:4s} {rel:40s} imgs={len(info['imgs']):3d} "
                              f"widgets={info['widgetsRendered']:3d} {time.perf_counter() - t0:5.1f} s")
                failures += [f"{rel}: {msg}" for msg in problems]
            browser.close()
    finally:
        server.shutdown()
    if blocked:
        report.append("blocked (offline check) requests to: " + ", ".join(sorted(blocked)))
    if external_imgs:
        report.append("external images, not checked offline: "
                      + ", ".join(sorted(u[:100] for u in external_imgs)))
    report.append(f"screenshots: {shots}")
    return failures, report


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
