"""Web bundles in headless Chromium beside the same bundle's run.py, measured in one run.

    PYTHONPATH=. python -m benchmarks.web_bundles CONVERTED [--quantize none,int8] [--pooling mean --normalize]
        [--bundles DIR] [--label NAME] [--out results.md] [--screenshot PNG]

For each quantization: the web bundle (packaged into --bundles DIR, or reused from there), then,
one after the other (never at once: the machine has 2 shared cores),
- run.py (onnxruntime, a fresh Python process): load = bundle.json + sha256 of every file +
  tokenizer + sessions; one text = median of 5 embed calls on a 12-token text; 32 texts = median
  of 3 embed calls on 32 texts of 10-60 tokens (batched by length), after a warm-up call of each;
- the page, served by the bundle's serve.py on 127.0.0.1, cross-origin isolated (wasm threads:
  the browser's cores, at most 4) and not isolated (1 thread): ready = navigation start to the page
  ready (fetch + sha256 of every file, tokenizer, sessions), then the same embed calls through
  encoderkit.mjs, timed inside the page.
Chromium: /usr/bin/chromium driven by Playwright (no browser download). The npm packages the
bundle copies come from $ENCODERKIT_WEB_NPM (default ~/.cache/encoderkit/web-npm).
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from encoderkit.deploy import package
from encoderkit.deploy.web import serve_module

ONE = "The quick brown fox jumps over the lazy dog."
_SENTENCES = ["Rain is expected later this week, so farmers are preparing their fields.",
              "Please send the report to the manager before the end of the week.",
              "The bridge was built in the nineteenth century and is still in use today.",
              "Reading books is one of the best ways to improve your vocabulary.",
              "The recipe calls for two cups of flour, one egg and a pinch of salt.",
              "The meeting has been moved to Thursday afternoon at three o'clock.",
              "Scientists discovered a new species of frog in the rainforest.",
              "The server returned an error because the request was too large."]
# 32 texts of one to four sentences (about 10 to 60 tokens)
MANY = [" ".join(_SENTENCES[(i + j) % 8] for j in range(1 + i % 4)) for i in range(32)]

RUN_PY = """
import importlib.util, json, sys, time
from pathlib import Path
root = Path(sys.argv[1]); one, many = json.loads(sys.argv[2])
spec = importlib.util.spec_from_file_location("bundle_run", root / "run.py")
run = importlib.util.module_from_spec(spec); spec.loader.exec_module(run)
t = time.perf_counter(); b = run.Bundle(root); load = time.perf_counter() - t
def median(texts, n):
    b.embed(texts)
    times = []
    for _ in range(n):
        t = time.perf_counter(); b.embed(texts); times.append(time.perf_counter() - t)
    return sorted(times)[n // 2]
print(json.dumps({"load": load, "one": median([one], 5), "many": median(many, 3), "rss": run.peak_rss_mb()}))
"""

PAGE = """async ([one, many]) => {
  const ek = window.encoderkit;
  const median = async (texts, n) => {
    await ek.embed(texts);
    const times = [];
    for (let i = 0; i < n; i++) { const t = performance.now(); await ek.embed(texts); times.push(performance.now() - t); }
    return times.sort((a, b) => a - b)[Math.floor(n / 2)] / 1000;
  };
  return {one: await median([one], 5), many: await median(many, 3), facts: ek.facts(), ready: window.EK.ready_ms / 1000};
}"""


def measure_run_py(bundle: Path) -> dict:
    env = {"PATH": "/usr/bin:/bin"}  # the runner alone: no PYTHONPATH, no encoderkit
    res = subprocess.run([sys.executable, "-c", RUN_PY, str(bundle), json.dumps([ONE, MANY])], capture_output=True,
                         text=True, env=env)
    if res.returncode:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(res.stdout)


def measure_page(browser, bundle: Path, isolation: bool, screenshot: Path | None = None) -> dict:
    server = serve_module().make_server(bundle, 0, isolation=isolation)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    outside: list[str] = []
    context.route(lambda u: not u.startswith((url, "blob:", "data:")),
                  lambda route: (outside.append(route.request.url), route.abort()))
    page = context.new_page()
    try:
        page.goto(url + "?selftest=0")
        page.wait_for_selector("html[data-ready]", state="attached", timeout=600_000)
        if page.get_attribute("html", "data-ready") != "1":
            return {"error": page.inner_text("#status")}
        out = page.evaluate(PAGE, [ONE, MANY])
        if screenshot:
            shoot(page, screenshot)
        out["outside"] = outside
        return out
    finally:
        context.close()
        server.shutdown()
        server.server_close()


def shoot(page, path: Path) -> None:
    """The page after a self-test and an embed of a few lines (similarity matrix)."""
    page.click("#selftest-run")
    page.wait_for_selector("html[data-selftest]", state="attached", timeout=600_000)
    page.evaluate("""() => {
        document.getElementById("task").value = "embed";
        document.getElementById("texts").value = ["A man is playing a guitar.", "Someone plays an instrument.",
            "The stock market fell sharply today.", "Shares dropped at the close of trading.",
            "Zürich's café serves crème brûlée."].join("\\n"); }""")
    page.click("#run")
    page.wait_for_selector(".matrix")
    page.screenshot(path=str(path), full_page=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("converted")
    ap.add_argument("--quantize", default="none,int8")
    ap.add_argument("--pooling", default=None)
    ap.add_argument("--normalize", action="store_true")
    ap.add_argument("--bundles", type=Path, default=Path("bench-out/web"), help="where bundles are written / reused")
    ap.add_argument("--label", default=None, help="model name in the table (default: the converted dir's)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--screenshot", type=Path, default=None, help="PNG of the first bundle's page with results")
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    label = a.label or Path(a.converted).name
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium")
        for q in a.quantize.split(","):
            bundle = a.bundles / f"{label}-{q}"
            info_path = bundle / "bundle.json"
            if not (info_path.is_file() and json.loads(info_path.read_text()).get("quantize") == q):
                print(f"packaging {bundle} ...", file=sys.stderr)
                try:
                    package(a.converted, "web", bundle, quantize=q, pooling=a.pooling, normalize=a.normalize, force=True)
                except Exception as e:  # noqa: BLE001 - e.g. refused as too large: a row says so
                    rows.append((label, "page", q, "", f"refused: {e}"[:140], "", "", ""))
                    continue
            info = json.loads(info_path.read_text())
            mb = f"{info['footprint']['bundle_bytes'] / 1e6:.1f}"
            r = measure_run_py(bundle)
            if "error" in r:
                rows.append((label, "run.py (onnxruntime)", q, "", mb, r["error"][:100], "", ""))
            else:
                rows.append((label, "run.py (onnxruntime)", q, "ORT default", mb, f"{r['load']:.2f}",
                             f"{r['one'] * 1e3:.1f}", f"{r['many'] * 1e3:.0f}"))
            for isolation in (True, False):
                print(f"page {bundle.name} isolation={isolation} ...", file=sys.stderr)
                shot = a.screenshot if isolation else None
                m = measure_page(browser, bundle, isolation, shot)
                if shot:
                    a.screenshot = None  # one picture: the first bundle's page
                if "error" in m:
                    rows.append((label, "page (Chromium)", q, "", mb, m["error"][:120], "", ""))
                    continue
                assert not m["outside"], m["outside"]
                t = m["facts"]["threads"]
                rows.append((label, f"page (Chromium, {'isolated' if isolation else 'not isolated'})", q,
                             str(t["used"]), mb, f"{m['ready']:.2f}", f"{m['one'] * 1e3:.1f}",
                             f"{m['many'] * 1e3:.0f}"))
        browser.close()
    lines = ["| model | runner | quantize | threads | bundle MB | ready / load s | one text ms | 32 texts ms |",
             "|---|---|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with a.out.open("a") as f:
            f.write(text)


if __name__ == "__main__":
    sys.exit(main())
