"""The attention page in a real browser (headless Chromium from Debian's packages, driven by Playwright).

Playwright's own browser download is unreachable here, so the tests point it at the system
binary; `.ci/run` installs `chromium` when it is missing. Without a browser they skip, saying why.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import encoderkit
from encoderkit.viewer import attention_record, decode_page, render
from encoderkit.viewer.synthetic import synthetic_record

pytestmark = pytest.mark.xdist_group("browser")  # one worker, one browser

BOUND = 1 / 510 + 1e-7  # uint8 levels: half a level of 1/255, plus float32 rounding


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
    from encoderkit.pipeline import convert

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


def test_512_tokens_open_and_stay_under_60_mb(browser, tmp_path, record_property):
    rec = synthetic_record(24, 16, 512, seed=5)
    path = tmp_path / "512.html"
    path.write_text(render(rec), encoding="utf-8")
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
