"""The attention page in a real browser (headless Chromium from Debian's packages, driven by Playwright).

Playwright's own browser download is unreachable here, so the tests point it at the system
binary; `.ci/run` installs `chromium` when it is missing. Without a browser they skip, saying why.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

import encoderkit
from encoderkit.viewer import attention_record, decode_page, render
from encoderkit.viewer.synthetic import perturbed, synthetic_record

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `pytest` (not `python -m pytest`) leaves the repository off the path
    sys.path.insert(0, str(REPO))
from benchmarks.viewer_pages import INTERACTIONS, timed  # noqa: E402  (the same timing as the benchmark)

pytestmark = pytest.mark.xdist_group("browser")  # one worker, one browser

BOUND = 1 / 510 + 1e-7  # uint8 levels: half a level of 1/255, plus float32 rounding
# Interaction bounds. The goal (issue 28) is an answer within 100 ms and a complete view within 1 s on
# a 2-core machine; these bounds are 20x and 5x that, for shared, noisy machines. The page before
# issue 28 took 9.5 s to switch the head view's layer at 512 tokens (294 s on random roberta-large).
RESPONSIVE_MS = 2000
COMPLETE_MS = 5000


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium binary found (apt-get install -y chromium; .ci/run does this)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe)
        yield b
        b.close()


class Opened:
    """A page opened from file://, with every request and console error it produced."""

    def __init__(self, browser, path: Path, viewport=(1280, 900)):
        self.url = path.as_uri()
        self.page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.goto(self.url)
        # wait on an attribute, not a JS predicate: the page's CSP forbids eval, which
        # Playwright's wait_for_function would need
        self.page.wait_for_selector("html[data-ready]", state="attached", timeout=60_000)
        assert self.page.get_attribute("html", "data-ready") == "1", self.page.evaluate("EK.error")

    def settle(self, timeout_ms: float = 60_000) -> None:
        """Wait until the page has drawn everything asked of it (views draw in slices after a click)."""
        self.page.wait_for_selector("html[data-idle]", state="attached", timeout=timeout_ms)

    def data(self, selector: str) -> dict:
        self.settle()
        return self.page.eval_on_selector(selector, "e => Object.assign({}, e.dataset)")

    def pixels(self, selector: str) -> str:
        self.settle()
        return self.page.eval_on_selector(selector, "c => c.toDataURL()")

    def close(self):
        self.page.close()


def _write(tmp_path_factory, name: str, page: str) -> Path:
    path = tmp_path_factory.mktemp("pages") / name
    path.write_text(page, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def large_record():
    return synthetic_record(24, 16, 128, seed=0, pair_at=70)  # roberta-large's 24 layers x 16 heads


@pytest.fixture(scope="module")
def large_page(tmp_path_factory, large_record):
    return _write(tmp_path_factory, "large.html", render(large_record))


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_roberta):
    from encoderkit.conversion import convert

    out = tmp_path_factory.mktemp("conv") / "tiny"
    convert(tiny_roberta, ["safetensors", "onnx"], out)
    return out


TEXT = "The café in Zürich is <mask>, naïve."


@pytest.fixture(scope="module")
def compare_case(tmp_path_factory, converted):
    a = attention_record(encoderkit.load(converted, "torch"), TEXT, pair="A second text.")
    b = attention_record(encoderkit.load(converted, "onnx"), TEXT, pair="A second text.")
    return a, b, _write(tmp_path_factory, "compare.html", render(a, compare=b))


def test_grid_click_hover_and_layer_switch(browser, large_page):
    o = Opened(browser, large_page)
    pg = o.page
    assert pg.locator("#grid canvas.thumb").count() == 384
    pg.click('#grid canvas.thumb[data-layer="7"][data-head="11"]')
    assert pg.get_attribute("#view-head", "class") == "view active"
    head = o.data("#head-canvas")
    assert head["layer"] == "7" and head["heads"] == "11" and head["focus"] == ""
    assert int(head["lines"]) > 128 and int(head["rows"]) > 100  # every query draws lines
    before = o.pixels("#head-canvas")

    pg.hover('#col-left .tok[data-i="5"]')
    hover = o.data("#head-canvas")
    assert hover["focus"] == "left:5" and hover["rows"] == "1"  # only token 5's lines remain
    assert 0 < int(hover["lines"]) <= 48 < int(head["lines"])
    assert o.pixels("#head-canvas") != before
    assert "only the lines of token 5" in pg.text_content("#head-status")
    pg.hover('#col-right .tok[data-i="9"]')
    assert o.data("#head-canvas")["focus"] == "right:9" and o.data("#head-canvas")["cols"] == "1"
    pg.mouse.move(1200, 10)  # leave the columns: all lines come back
    assert o.data("#head-canvas")["focus"] == "" and o.pixels("#head-canvas") == before

    pg.select_option("#layer-select", "3")
    switched = o.data("#head-canvas")
    assert switched["layer"] == "3" and switched["heads"] == "11"
    assert o.pixels("#head-canvas") != before  # another layer, other lines
    pg.click('.head-toggle[data-head="2"]')
    assert o.data("#head-canvas")["heads"] == "2,11"
    pg.check("#avg")
    assert o.data("#head-canvas")["avg"] == "1"
    assert o.requests == [o.url] and o.errors == []
    o.close()


def test_no_network_request_and_csp(browser, compare_case):
    _, _, path = compare_case
    o = Opened(browser, path)
    for view in ("head", "matrix", "compare", "model"):
        o.page.click(f"#tab-{view}")
    assert o.requests == [o.url]  # nothing but the file:// page itself
    html = path.read_text(encoding="utf-8")
    assert "default-src 'none'" in html and "http://" not in html and "https://" not in html
    o.close()


def test_pair_boundary_and_hidden_special_tokens(browser, large_page, large_record):
    o = Opened(browser, large_page)
    pg = o.page
    pg.click("#tab-head")
    assert pg.get_attribute("#col-left .tok.boundary", "data-i") == "70"
    assert pg.locator("#col-left .tok.seg-b").count() == 128 - 70
    assert pg.locator("#col-left .tok").count() == 128
    pg.check("#hide-special")
    n_special = int(large_record.special.sum())
    assert n_special == 4 and pg.locator("#col-left .tok").count() == 128 - n_special
    assert pg.locator("#col-left .tok.special").count() == 0
    assert pg.text_content('#col-left .tok[data-i="1"]') == "␣The"  # Ġ shown as a space mark
    assert "Zürich" in pg.text_content("h1") and "é" in pg.text_content("#col-left")
    o.close()


def test_values_in_the_browser_equal_attentions(browser, compare_case):
    a, _, path = compare_case  # a: torch's attention record of TEXT + pair
    o = Opened(browser, path)
    L, H, N = a.probs.shape[:3]
    got = np.array(o.page.evaluate(
        f"(() => {{ const o = []; for (let l = 0; l < {L}; l++) for (let h = 0; h < {H}; h++)"
        f" for (let i = 0; i < {N}; i++) for (let j = 0; j < {N}; j++) o.push(EK.prob(l, h, i, j)); return o; }})()"))
    assert np.abs(got.reshape(a.probs.shape) - a.probs).max() <= BOUND  # decoded by the page's own JS
    page_err = decode_page(path.read_text(encoding="utf-8"))["meta"]["quant"]["max_error"]
    assert f"largest error here: {page_err:.5f}" in o.page.text_content("#quant")

    o.page.click("#tab-matrix")
    o.page.select_option("#matrix-layer", "1")
    o.page.select_option("#matrix-head", "2")
    d = o.data("#matrix-canvas")
    cell, margin = int(d["cell"]), int(d["margin"])
    i, j = 3, 7
    o.page.hover("#matrix-canvas", position={"x": margin + (j + 0.5) * cell, "y": margin + (i + 0.5) * cell})
    v = o.data("#matrix-value")
    assert (v["i"], v["j"]) == (str(i), str(j))
    assert abs(float(v["value"]) - a.probs[1, 2, i, j]) <= BOUND
    o.close()


def test_compare_max_diff_per_layer_equals_numpy(browser, compare_case):
    a, b, path = compare_case
    o = Opened(browser, path)
    o.page.click("#tab-compare")
    diff = b.probs - a.probs
    want = np.abs(diff).reshape(diff.shape[0], -1).max(axis=1)
    assert want.max() > 0  # torch and ONNX Runtime do differ, in the last bits
    shown = [float(x) for x in o.page.eval_on_selector_all("#maxdiff td.maxdiff", "es => es.map(e => e.dataset.value)")]
    np.testing.assert_array_equal(np.float32(shown), want)
    max_error = decode_page(path.read_text(encoding="utf-8"))["meta"]["diff"]["max_error"]
    for layer in range(diff.shape[0]):  # and what the page decodes from its int8 levels agrees
        assert abs(o.page.evaluate(f"EK.decodedMaxDiff({layer})") - want[layer]) <= max_error + 1e-12
    assert o.page.locator("#diff-grid canvas.thumb").count() == a.probs.shape[0] * a.probs.shape[1]
    o.close()


def _drawn(png: bytes) -> tuple[int, float]:
    """(distinct colours, share of pixels that are not the white background)."""
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    return len(np.unique(img, axis=0)), float((img.min(axis=1) < 245).mean())


# the element that holds each view's drawing
VIEW_BODY = {"model": "#grid", "head": "#head-wrap", "matrix": "#matrix-canvas", "compare": "#view-compare"}


@pytest.mark.parametrize("page_name", ["large", "compare"])
def test_screenshots_of_each_view_are_not_blank(browser, large_page, compare_case, page_name):
    path = large_page if page_name == "large" else compare_case[2]
    o = Opened(browser, path)
    views = ["model", "head", "matrix"] + (["compare"] if page_name == "compare" else [])
    shots = {}
    for view in views:
        o.page.click(f"#tab-{view}")
        if view == "head":
            o.page.hover('#col-left .tok[data-i="2"]')
        if view == "compare":
            o.page.click('#diff-grid canvas.thumb[data-layer="1"][data-head="0"]')
        o.settle()
        shots[view] = o.page.screenshot()
        colours, inked = _drawn(o.page.locator(VIEW_BODY[view]).screenshot())
        assert colours > 8 and inked > 0.03, (view, colours, inked)  # drawn content, not an empty box
    assert len(set(shots.values())) == len(views)  # each view looks different
    keep = os.environ.get("EK_VIEWER_SCREENSHOTS")  # set to a folder to keep them
    if keep:
        for view, png in shots.items():
            Path(keep, f"{page_name}-{view}.png").write_bytes(png)
    o.close()


@pytest.fixture(scope="module")
def page_512(tmp_path_factory):
    return _write(tmp_path_factory, "512.html", render(synthetic_record(24, 16, 512, seed=5)))


def test_512_tokens_open_and_stay_under_60_mb(browser, page_512, record_property):
    path = page_512
    size = path.stat().st_size
    assert size < 60e6
    o = Opened(browser, path)
    assert o.page.locator("#grid canvas.thumb").count() == 384
    o.page.click('#grid canvas.thumb[data-layer="23"][data-head="15"]')
    assert o.data("#head-canvas")["layer"] == "23"
    timing = o.page.evaluate("({grid: EK.gridMs, ready: EK.readyMs})")
    # measured and reported, not asserted: timing on a shared 2-core machine is not a test
    record_property("viewer_512", json.dumps({"bytes": size, **timing}))
    print(f"\n512 tokens, 24 x 16: {size / 1e6:.1f} MB, grid drawn {timing['grid']:.0f} ms, ready {timing['ready']:.0f} ms")
    o.close()


def run_interactions(o: Opened, label: str, record_property) -> dict:
    """Time every INTERACTIONS step on an opened page; fail at the first step past a bound."""
    o.page.set_default_timeout(600_000)  # a page that freezes is measured, not cut off at 30 s
    times: dict[str, dict] = {}
    for name, act, needs in INTERACTIONS:
        if needs is not None and o.page.query_selector(needs) is None:
            continue  # the compare view's steps on a page without one (and, before issue 28, the scale menu)
        t = times[name] = timed(o.page, act, timeout_ms=600_000)
        assert t["responsive"] <= RESPONSIVE_MS and t["complete"] <= COMPLETE_MS, (
            f"{label}, {name}: responsive after {t['responsive']:.0f} ms, complete after {t['complete']:.0f} ms "
            f"(bounds {RESPONSIVE_MS} / {COMPLETE_MS} ms); steps before: "
            + ", ".join(f"{k} {v['responsive']:.0f}/{v['complete']:.0f}" for k, v in times.items() if k != name))
    assert "model view: thumbnail scale" in times, f"{label}: the page has no thumbnail scale menu"
    record_property(f"interaction_{label}", json.dumps({k: {m: round(v[m]) for m in ("responsive", "complete")}
                                                       for k, v in times.items()}))
    resp = [v["responsive"] for v in times.values()]
    comp = [v["complete"] for v in times.values()]
    print(f"\n{label}: responsive median {statistics.median(resp):.0f} ms, max {max(resp):.0f} ms; "
          f"complete median {statistics.median(comp):.0f} ms, max {max(comp):.0f} ms")
    for k, v in times.items():
        print(f"  {k}: {v['responsive']:.0f} / {v['complete']:.0f} ms")
    return times


@pytest.mark.parametrize("tokens", [128, 512])
def test_every_view_answers_and_completes_at_roberta_large_scale(browser, tmp_path, tokens, record_property):
    """Clicks, switches and hovers in every view (a compare page) at 24 layers x 16 heads, timed."""
    rec = synthetic_record(24, 16, tokens, seed=0)
    path = tmp_path / f"{tokens}.html"
    path.write_text(render(rec, compare=perturbed(rec)), encoding="utf-8")
    del rec
    o = Opened(browser, path)
    times = run_interactions(o, f"{tokens} tokens", record_property)
    assert len(times) == len(INTERACTIONS)  # the compare view's steps too
    assert sum(v["drew"] for v in times.values()) >= 15  # the steps did start drawing (not no-ops)
    pg = o.page  # and the page ends where the steps led it
    assert pg.get_attribute("html", "data-view") == "model" and pg.get_attribute("html", "data-thumb-scale") == "own"
    head = o.data("#head-canvas")
    assert head["layer"] == "7" and head["heads"] == ",".join(map(str, range(16))) and head["focus"] == ""
    assert int(head["lines"]) > 0 and head["drawn"] == "1"
    assert o.data("#matrix-canvas")["head"] == "avg"
    assert o.requests == [o.url] and o.errors == []
    o.close()


def test_newest_interaction_replaces_drawing_in_progress(browser, page_512):
    o = Opened(browser, page_512)
    pg = o.page
    # both in one task: the head view's job is replaced before it draws a slice
    pg.evaluate("document.getElementById('tab-head').click();"
                "document.querySelector('#col-left .tok[data-i=\"7\"]')"
                ".dispatchEvent(new MouseEvent('mouseover', {bubbles: true}))")
    o.settle()
    jobs = pg.evaluate("EK.jobs")
    assert jobs["replaced"] >= 1 and pg.get_attribute("html", "data-done") == pg.get_attribute("html", "data-req")
    assert o.data("#head-canvas")["focus"] == "left:7"
    # as a person would: open the head view (all heads, a long drawing) and hover a token at once
    pg.click("#tab-model")
    o.settle()
    t = timed(pg, lambda p: (p.click("#tab-head"), p.hover('#col-left .tok[data-i="9"]')))
    head = o.data("#head-canvas")
    assert head["focus"] == "left:9" and head["rows"] == "1"  # the hover's view, not the one it replaced
    assert t["responsive"] <= RESPONSIVE_MS and t["complete"] <= COMPLETE_MS, t
    assert o.errors == []
    o.close()


def _thumb_contrast(o: Opened, layer: int, head: int) -> tuple[float, float]:
    """(darkness of a thumbnail's diagonal cells - darkness of its far off-diagonal cells, the darkest cell);
    darkness = 255 - the smallest colour channel (0 = white)."""
    px = np.array(o.page.eval_on_selector(f'#grid canvas.thumb[data-layer="{layer}"][data-head="{head}"]',
                                          "c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)"))
    t = int(round((px.size // 4) ** 0.5))
    dark = 255 - px.reshape(t, t, 4)[..., :3].min(axis=-1).astype(float)
    r, c = np.indices((t, t))
    return float(dark[r == c].mean() - dark[np.abs(r - c) > 3].mean()), float(dark.max())


def test_long_diffuse_input_thumbnails_show_structure(browser, tmp_path):
    """Spread-out attention at 300 tokens (a local window at 2.2x the rest): on the absolute scale the
    thumbnails are nearly blank; the default scale for long inputs, and the own-range one, show it."""
    n = 300
    i = np.arange(n)
    logits = np.where(np.abs(i[:, None] - i[None, :]) <= 4, 0.8, 0.0)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    rec = synthetic_record(2, 2, n, seed=2)
    rec.probs[:] = p.astype(np.float32)
    path = tmp_path / "diffuse.html"
    path.write_text(render(rec), encoding="utf-8")
    o = Opened(browser, path)
    pg = o.page
    assert pg.get_attribute("html", "data-thumb-scale") == "uniform"  # the default above 128 tokens
    legend = pg.text_content("#thumb-legend")
    assert "relative to uniform attention 1/n (n = 300" in legend and "1/8 ×" in legend and "red 8 ×" in legend
    shown = {"uniform": _thumb_contrast(o, 0, 0)}
    for scale in ("absolute", "own", "log"):
        pg.select_option("#thumb-scale", scale)
        o.settle()
        assert pg.get_attribute("html", "data-thumb-scale") == scale
        shown[scale] = _thumb_contrast(o, 1, 1)
        if scale == "own":  # each thumbnail states its own range
            assert "white 0.00" in pg.get_attribute('#grid canvas.thumb[data-layer="1"][data-head="1"]', "title")
    print("\n(diagonal - off-diagonal darkness, darkest cell): "
          + ", ".join(f"{k} {v[0]:.0f}, {v[1]:.0f}" for k, v in shown.items()))
    assert shown["absolute"][1] < 60 and shown["absolute"][0] < 20  # nearly white, next to no contrast
    assert shown["uniform"][0] > 60 and shown["own"][0] > 150 and shown["log"][0] > shown["absolute"][0]
    pg.select_option("#thumb-scale", "uniform")
    pg.check("#hide-special")  # the grid without <s> and </s> is relative to its own n
    o.settle()
    assert "(n = 298 tokens shown)" in pg.text_content("#thumb-legend")
    assert o.errors == []
    o.close()


@pytest.mark.slow
def test_random_roberta_large_512_tokens_stays_interactive(tmp_path, browser, record_property):
    """The issue's case: `encoderkit attention` on random-weight roberta-large, a text cut to 512 tokens."""
    from encoderkit.cli import main
    from encoderkit.storage.random_init import init_random

    init_random(tmp_path / "large", "large")
    text = " ".join(["The quick brown fox jumps over the lazy dog, and then it slept in the warm sun."] * 40)
    out = tmp_path / "large.html"
    assert main(["attention", str(tmp_path / "large"), text, "--backend", "torch", "--truncate",
                 "--out", str(out), "--quiet"]) == 0
    meta = decode_page(out.read_text(encoding="utf-8"))["meta"]
    assert meta["seq"] == 512 and len(meta["layers"]) == 24 and len(meta["heads"]) == 16
    assert meta["thumb"]["scale"] == "uniform"
    keep = os.environ.get("EK_VIEWER_PAGES")  # set to a folder to keep the page (benchmarks.viewer_pages --page)
    if keep:
        shutil.copy(out, Path(keep, "roberta-large-random-512.html"))
    o = Opened(browser, out)
    size = out.stat().st_size
    ready = o.page.evaluate("EK.readyMs")
    print(f"\nrandom roberta-large, 512 tokens: {size / 1e6:.1f} MB page, ready {ready:.0f} ms")
    record_property("roberta_large_page", json.dumps({"bytes": size, "ready_ms": ready}))
    run_interactions(o, "random roberta-large, 512 tokens", record_property)
    assert o.errors == []
    o.close()
