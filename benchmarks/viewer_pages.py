"""Attention page size, open time and interaction (issues 13 and 28), and the README's screenshots.

    python -m benchmarks.viewer_pages                      # size and open time: 128 and 512 tokens, 24 x 16
    python -m benchmarks.viewer_pages --interaction        # time every view, switch and hover (medians)
    python -m benchmarks.viewer_pages --interaction --page view.html   # ... on a page already written
    python -m benchmarks.viewer_pages --screenshots docs --model DIR --compare onnx

Sizes and times use synthetic records (random row-stochastic attention, roberta-large's shape):
the page does not care where the numbers came from, and a 512-token roberta-large forward pass
is not what is being measured (the slow test in tests/test_viewer_browser.py runs one). Open time =
navigation start to the page's "ready" mark (every view decoded and drawable), in headless Chromium;
the grid's own time is reported beside it.

Interaction (``timed``): "responsive" = from the start of a Playwright action (click, hover, select)
until ``page.evaluate("1")`` returns after it, i.e. until the page answers again; "complete" = from
the same start until the page marks the view drawn (``EK.doneAt``, set with ``<html data-idle>``).
A Playwright click alone takes some 30-50 ms here (actionability checks): ``floor`` measures it on
an element with no handler.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# The interactions timed on a 24 x 16 page, in order (each starts where the previous one left the page):
# (name, action, a selector the step needs, else it is skipped: the compare view is only on pages made
# with --compare, and pages from before issue 28 lack the thumbnail-scale menu).
COMPARE = "#tab-compare:not([hidden])"
INTERACTIONS: list[tuple[str, Callable, str | None]] = [
    ("head view: open (all 16 heads)", lambda pg: pg.click("#tab-head"), None),
    ("head view: switch layer", lambda pg: pg.select_option("#layer-select", "3"), None),
    ("head view: toggle a head", lambda pg: pg.click('.head-toggle[data-head="2"]'), None),
    ("head view: hover a query token", lambda pg: pg.hover('#col-left .tok[data-i="5"]'), None),
    ("head view: hover a key token", lambda pg: pg.hover('#col-right .tok[data-i="9"]'), None),
    ("head view: leave the tokens", lambda pg: pg.mouse.move(1200, 10), None),
    ("head view: average over heads", lambda pg: pg.check("#avg"), None),
    ("matrix view: open", lambda pg: pg.click("#tab-matrix"), None),
    ("matrix view: switch layer", lambda pg: pg.select_option("#matrix-layer", "5"), None),
    ("matrix view: average of heads", lambda pg: pg.select_option("#matrix-head", "-1"), None),
    ("matrix view: hover a cell", lambda pg: pg.hover("#matrix-canvas", position={"x": 200, "y": 200}), None),
    ("compare view: open", lambda pg: pg.click("#tab-compare"), COMPARE),
    ("compare view: click a thumbnail",
     lambda pg: pg.click('#diff-grid canvas.thumb[data-layer="5"][data-head="3"]'), COMPARE),
    ("compare view: click a layer row (max diff)", lambda pg: pg.click('#maxdiff tbody tr[data-layer="9"]'), COMPARE),
    ("compare view: hover a cell", lambda pg: pg.hover("#diff-canvas", position={"x": 200, "y": 200}), COMPARE),
    ("model view: open", lambda pg: pg.click("#tab-model"), None),
    ("model view: click a thumbnail", lambda pg: pg.click('#grid canvas.thumb[data-layer="7"][data-head="11"]'), None),
    ("head view: all heads", lambda pg: pg.click("#heads-all"), None),
    ("hide special tokens (head view)", lambda pg: pg.check("#hide-special"), None),
    ("model view: open again (redraw)", lambda pg: pg.click("#tab-model"), None),
    ("model view: thumbnail scale", lambda pg: pg.select_option("#thumb-scale", "own"), "#thumb-scale"),
]


def timed(pg, action: Callable, timeout_ms: float = 60_000) -> dict:
    """Run ``action(pg)`` and time it: {"responsive": ms, "complete": ms, "drew": bool}.

    "complete" is when the page finished the drawing the action asked for (its ``EK.doneAt``, on the
    page's clock, read from the start of the action); an action that starts no drawing (a matrix
    hover readout, or any action on a page that draws synchronously) is complete when it is responsive.
    """
    req0 = pg.get_attribute("html", "data-req")
    p0 = pg.evaluate("performance.now()")
    t0 = time.perf_counter()
    action(pg)
    pg.evaluate("1")
    responsive = (time.perf_counter() - t0) * 1000
    req1 = pg.get_attribute("html", "data-req")
    if req1 is None or req1 == req0:
        return {"responsive": responsive, "complete": responsive, "drew": False}
    pg.wait_for_selector("html[data-idle]", state="attached", timeout=timeout_ms)
    return {"responsive": responsive, "complete": max(pg.evaluate("EK.doneAt") - p0, 0.0), "drew": True}


def open_page(browser, path: Path, viewport=(1280, 900)):
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    page.goto(path.as_uri())
    page.wait_for_selector("html[data-ready]", state="attached", timeout=120_000)
    return page


def interaction(browser, path: Path, repeats: int = 1, timeout_ms: float = 60_000) -> dict:
    """Median timings of every INTERACTIONS step on the page at ``path`` over ``repeats`` fresh opens.

    Returns:
        {"steps": {name: {"responsive": ms, "complete": ms}}, "floor": ms (a click with no handler)}.
    """
    runs, floors = [], []
    for _ in range(repeats):
        pg = open_page(browser, path)
        pg.set_default_timeout(timeout_ms)
        t0 = time.perf_counter()
        pg.click("#info")
        floors.append((time.perf_counter() - t0) * 1000)
        runs.append({name: timed(pg, act, timeout_ms) for name, act, needs in INTERACTIONS
                     if needs is None or pg.query_selector(needs) is not None})
        pg.close()
    steps = {name: {k: statistics.median(r[name][k] for r in runs) for k in ("responsive", "complete")}
             for name, _, _ in INTERACTIONS if name in runs[0]}
    return {"steps": steps, "floor": statistics.median(floors)}


def _open(browser, path: Path) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    t = time.perf_counter()
    page.goto(path.as_uri())
    page.wait_for_selector("html[data-ready]", state="attached", timeout=60_000)
    wall = (time.perf_counter() - t) * 1000
    marks = page.evaluate("({grid: EK.gridMs, ready: EK.readyMs})")
    page.close()
    return {"wall": wall, **marks}


def measure(browser, seqs=(128, 512), repeats: int = 3) -> list[dict]:
    from encoderkit.viewer import render
    from encoderkit.viewer.synthetic import synthetic_record

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in seqs:
            rec = synthetic_record(24, 16, n, seed=0)
            t = time.perf_counter()
            html = render(rec)
            render_s = time.perf_counter() - t
            path = Path(tmp) / f"{n}.html"
            path.write_text(html, encoding="utf-8")
            runs = [_open(browser, path) for _ in range(repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rows.append({"tokens": n, "mb": path.stat().st_size / 1e6, "render_s": render_s, **med})
    return rows


def settle(page) -> None:
    page.wait_for_selector("html[data-idle]", state="attached", timeout=60_000)


def screenshots(browser, out: Path, model: str, compare: str | None) -> None:
    import encoderkit
    from encoderkit.viewer import attention_record, render

    text = "The cat sat on the mat because it was tired."
    pair = "It fell asleep in the sun."
    rec = attention_record(encoderkit.load(model, "torch"), text, pair)
    cmp = attention_record(encoderkit.load(model, compare), text, pair) if compare else None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "view.html"
        path.write_text(render(rec, compare=cmp), encoding="utf-8")
        page = browser.new_page(viewport={"width": 1100, "height": 760})
        page.goto(path.as_uri())
        page.wait_for_selector("html[data-ready]", state="attached", timeout=60_000)
        page.click('#grid canvas.thumb[data-layer="2"][data-head="5"]')
        page.click('.head-toggle[data-head="9"]')
        page.hover('#col-left .tok[data-i="8"]')
        settle(page)
        page.screenshot(path=str(out / "viewer-head.png"))
        page.mouse.move(1090, 5)
        page.click("#tab-matrix")
        page.select_option("#matrix-layer", "2")
        page.select_option("#matrix-head", "5")
        d = page.eval_on_selector("#matrix-canvas", "e => Object.assign({}, e.dataset)")
        c, m = int(d["cell"]), int(d["margin"])
        page.hover("#matrix-canvas", position={"x": m + 7.5 * c, "y": m + 8.5 * c})
        settle(page)
        page.screenshot(path=str(out / "viewer-matrix.png"))
        page.click("#tab-model")
        settle(page)
        page.screenshot(path=str(out / "viewer-model.png"))
        if cmp is not None:
            page.click("#tab-compare")
            page.click('#diff-grid canvas.thumb[data-layer="5"][data-head="0"]')
            settle(page)
            page.screenshot(path=str(out / "viewer-compare.png"), full_page=False)
        page.close()


def _synthetic_page(tmp: str, n: int) -> Path:
    """A 24 x 16 compare page (every view) of n tokens."""
    from encoderkit.viewer import render
    from encoderkit.viewer.synthetic import perturbed, synthetic_record

    rec = synthetic_record(24, 16, n, seed=0)
    path = Path(tmp) / f"{n}.html"
    path.write_text(render(rec, compare=perturbed(rec)), encoding="utf-8")
    return path


def interaction_table(results: dict[str, dict]) -> str:
    """Markdown: one row per interaction, responsive / complete (ms) per page."""
    names = list(results)
    out = ["| interaction | " + " | ".join(f"{n}: responsive / complete" for n in names) + " |",
           "|---|" + "---|" * len(names)]
    for step, _, _ in INTERACTIONS:
        cells = [f"{results[n]['steps'][step]['responsive']:.0f} / {results[n]['steps'][step]['complete']:.0f} ms"
                 if step in results[n]["steps"] else "—" for n in names]
        out.append(f"| {step} | " + " | ".join(cells) + " |")
    worst = [f"{max(v['responsive'] for v in results[n]['steps'].values()):.0f} / "
             f"{max(v['complete'] for v in results[n]['steps'].values()):.0f} ms" for n in names]
    out.append("| **slowest step** | " + " | ".join(worst) + " |")
    out.append("| (a Playwright click with no handler) | "
               + " | ".join(f"{results[n]['floor']:.0f} ms" for n in names) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--screenshots", type=Path, default=None, help="write the README's screenshots here")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--compare", default=None, help="backend for the compare screenshot (needs a convert output)")
    ap.add_argument("--interaction", action="store_true", help="time clicks, switches and hovers in every view")
    ap.add_argument("--page", type=Path, action="append", default=None,
                    help="with --interaction: a page already written (24 x 16); default: synthetic 128 and 512 tokens")
    ap.add_argument("--timeout", type=float, default=600, help="with --interaction: seconds a step may take")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        if a.screenshots:
            screenshots(browser, a.screenshots, a.model, a.compare)
            return
        if a.interaction:
            with tempfile.TemporaryDirectory() as tmp:
                pages = {str(x): x for x in a.page} if a.page else \
                    {f"{n} tokens (compare page)": _synthetic_page(tmp, n) for n in (128, 512)}
                results = {}
                for name, path in pages.items():
                    results[name] = interaction(browser, path, a.repeats, a.timeout * 1000)
                    print(f"{name}: {path.stat().st_size / 1e6:.1f} MB, medians of {a.repeats}", flush=True)
                print(interaction_table(results))
            browser.close()
            return
        print("| tokens (24 x 16) | page | render (Python) | grid drawn | ready (all views) | wall |")
        print("|---|---|---|---|---|---|")
        for r in measure(browser, repeats=a.repeats):
            print(f"| {r['tokens']} | {r['mb']:.1f} MB | {r['render_s']:.1f} s | {r['grid']:.0f} ms | "
                  f"{r['ready']:.0f} ms | {r['wall']:.0f} ms |")
        browser.close()


if __name__ == "__main__":
    main()
