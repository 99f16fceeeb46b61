"""Attention page size and open time (issue 13), and the README's screenshots.

    python -m benchmarks.viewer_pages                      # 128 and 512 tokens, 24 layers x 16 heads
    python -m benchmarks.viewer_pages --screenshots docs --model DIR --compare onnx

Sizes and times use synthetic records (random row-stochastic attention, roberta-large's shape):
the page does not care where the numbers came from, and a 512-token roberta-large forward pass
is not what is being measured. Open time = navigation start to the page's "ready" mark (every
view decoded and drawable), in headless Chromium; the grid's own time is reported beside it.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


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
        page.screenshot(path=str(out / "viewer-head.png"))
        page.mouse.move(1090, 5)
        page.click("#tab-matrix")
        page.select_option("#matrix-layer", "2")
        page.select_option("#matrix-head", "5")
        d = page.eval_on_selector("#matrix-canvas", "e => Object.assign({}, e.dataset)")
        c, m = int(d["cell"]), int(d["margin"])
        page.hover("#matrix-canvas", position={"x": m + 7.5 * c, "y": m + 8.5 * c})
        page.screenshot(path=str(out / "viewer-matrix.png"))
        page.click("#tab-model")
        page.screenshot(path=str(out / "viewer-model.png"))
        if cmp is not None:
            page.click("#tab-compare")
            page.click('#diff-grid canvas.thumb[data-layer="5"][data-head="0"]')
            page.screenshot(path=str(out / "viewer-compare.png"), full_page=False)
        page.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--screenshots", type=Path, default=None, help="write the README's screenshots here")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--compare", default=None, help="backend for the compare screenshot (needs a convert output)")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium")
        if a.screenshots:
            screenshots(browser, a.screenshots, a.model, a.compare)
            return
        print("| tokens (24 x 16) | page | render (Python) | grid drawn | ready (all views) | wall |")
        print("|---|---|---|---|---|---|")
        for r in measure(browser, repeats=a.repeats):
            print(f"| {r['tokens']} | {r['mb']:.1f} MB | {r['render_s']:.1f} s | {r['grid']:.0f} ms | "
                  f"{r['ready']:.0f} ms | {r['wall']:.0f} ms |")
        browser.close()


if __name__ == "__main__":
    main()
