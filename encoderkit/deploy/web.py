"""Target ``web``: a static folder a web server serves as is, running fill-mask, embed and
classify in the browser on onnxruntime-web (wasm execution provider), with no CDN.

Bundle layout::

    index.html page.mjs            the page: text box, task selector, results, facts, self-test
    encoderkit.mjs                 the JS module: load(baseUrl), embed, fillMask, classify, selfTest
    vendor/ort/...                 onnxruntime-web's wasm build (.mjs glue + .wasm), pinned
    vendor/tokenizers/...          @huggingface/tokenizers' ES module (reads tokenizer.json), pinned
    model.onnx [model.onnx.data]   encoder: input_ids, attention_mask -> last_hidden_state and
                                   sentence_embedding (pooling + normalisation in the graph)
    head.onnx                      MLM head, run on the mask positions' rows only (fill-mask)
    classifier.onnx                classification head, run on each text's first row (classify)
    tokenizer.json ...             the model's tokenizer (its own truncation/padding removed)
    bundle.json                    facts, sha256 + size of every file, probe outputs
    serve.py                       python3 serve.py: 127.0.0.1 with the cross-origin isolation headers
    run.py requirements.txt        the Python runner over the same graphs (package-time self-test)
    README.md                      how to serve and host it

``encoderkit.mjs`` fetches every file bundle.json lists and checks its sha256 with SubtleCrypto
before it creates a session; the JS it then runs (onnxruntime-web, its glue, tokenizers) and the
wasm binary are the verified bytes themselves (blob URLs, ``env.wasm.wasmBinary``), not a second
fetch. The npm packages come from the registry at package time (``npm install --ignore-scripts``,
exact versions) into a cache folder, and each copied file must have the sha256 pinned here.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

from ..core.errors import ArtifactError, InputError
from .common import Converted, Plan, base_bundle, finish, probe_texts, reference_outputs, template, write_tokenizer
from .onnx_bundle import ENCODER_KEY, write_graphs, write_runner

# The browser stack, pinned: npm package -> version (DESIGN.md: measured on this machine).
WEB_PACKAGES = {"onnxruntime-web": "1.30.0", "@huggingface/tokenizers": "0.2.0"}
# bundle path -> (npm package, file inside it, sha256 of that file at the pinned version). A
# registry (or cache) that hands out other bytes under the same version is refused.
VENDOR_FILES = {
    "vendor/ort/ort.wasm.min.mjs": ("onnxruntime-web", "dist/ort.wasm.min.mjs",
                                    "219e6a1fc8a9938268d18efca3c91d310bd2f4a59bbd13744df5b2b7fc6cee3b"),
    "vendor/ort/ort-wasm-simd-threaded.mjs": ("onnxruntime-web", "dist/ort-wasm-simd-threaded.mjs",
                                              "e13f7f94fc51b4ca72b12faeb1ee95f4ace6dfbc8939bc718aabdc0a27c4299b"),
    "vendor/ort/ort-wasm-simd-threaded.wasm": ("onnxruntime-web", "dist/ort-wasm-simd-threaded.wasm",
                                               "3398c10d07d229bd91b364548e130e0e51a8e5704b88c7c083ebbeb78842dee2"),
    "vendor/tokenizers/tokenizers.min.mjs": ("@huggingface/tokenizers", "dist/tokenizers.min.mjs",
                                             "258e46332101335ce8d95aed7745b19ac3b46d37f3e159a89cf894c2ea9b1d3a"),
    "vendor/tokenizers/LICENSE": ("@huggingface/tokenizers", "LICENSE", None),
}
# Where `package --target web` installs the npm packages (override: $ENCODERKIT_WEB_NPM).
NPM_ENV = "ENCODERKIT_WEB_NPM"
DEFAULT_NPM_DIR = Path.home() / ".cache" / "encoderkit" / "web-npm"

# Browser limits (DESIGN.md, measured in Chromium 156): one fetched file is one ArrayBuffer (they
# cap near 2 GB), and the wasm32 heap onnxruntime-web runs in caps at 4 GB. Loading a graph
# copies its bytes into the heap beside the weights it unpacks, so the peak while loading is
# about every graph once plus the largest graph again; WORKING_BYTES leaves room for activations.
MAX_FILE_BYTES = 2**31 - 1
WASM_MEMORY_BYTES = 4 * 2**30
WORKING_BYTES = 256 * 2**20

TEMPLATES = {"index.html": "web_index.html", "page.mjs": "web_page.mjs", "encoderkit.mjs": "encoderkit.mjs",
             "serve.py": "serve.py"}


def npm_dir() -> Path:
    """The folder the pinned npm packages are installed into (``$ENCODERKIT_WEB_NPM`` or the user cache)."""
    return Path(os.environ.get(NPM_ENV) or DEFAULT_NPM_DIR)


def _installed_version(root: Path, package: str) -> str | None:
    try:
        return json.loads((root / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def npm_dir_ready(root: Path) -> bool:
    """Whether ``root/node_modules`` holds exactly the pinned versions."""
    return all(_installed_version(Path(root), p) == v for p, v in WEB_PACKAGES.items())


def web_runtime(root: Path | None = None, say=lambda msg: None) -> Path:
    """``node_modules`` holding the pinned packages, installed from the npm registry when missing.

    Raises:
        ArtifactError: npm is missing or fails (one line saying what to do).
    """
    root = Path(root or npm_dir())
    if npm_dir_ready(root):
        return root / "node_modules"
    npm = shutil.which("npm")
    pins = ", ".join(f"{p}@{v}" for p, v in WEB_PACKAGES.items())
    if npm is None:
        raise ArtifactError(f"--target web copies {pins} from npm, and npm is not installed (install Node.js "
                            f"and npm, or set ${NPM_ENV} to a folder where they are installed)")
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps(
        {"name": "encoderkit-web-runtime", "version": "1.0.0", "private": True,
         "description": "the browser runtime encoderkit copies into web bundles", "dependencies": WEB_PACKAGES},
        indent=1) + "\n")
    say(f"npm install {pins} ...")
    # --ignore-scripts: nothing of these packages runs here; we only copy their dist files.
    res = subprocess.run([npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                         cwd=root, capture_output=True, text=True)
    if res.returncode or not npm_dir_ready(root):
        tail = (res.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
        raise ArtifactError(f"npm install {pins} failed in {root}: {tail}")
    return root / "node_modules"


def copy_vendor(modules: Path, out: Path) -> dict[str, str]:
    """Copy the browser runtime's files into ``out``; return {package: version}.

    Raises:
        ArtifactError: a file differs from the sha256 pinned for its version.
    """
    from ..storage.files import sha256_file

    for rel, (package, inner, sha) in VENDOR_FILES.items():
        src = modules / package / inner
        if not src.is_file():
            raise ArtifactError(f"{src} is missing; delete {modules.parent} to reinstall the npm packages")
        if sha is not None and sha256_file(src) != sha:
            raise ArtifactError(f"{src}: sha256 differs from the one pinned for {package} "
                                f"{WEB_PACKAGES[package]}; refusing to bundle it (delete {modules.parent} to reinstall)")
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out / rel)
    return dict(WEB_PACKAGES)


def graph_sizes(source: Converted, p: Plan) -> dict[str, int]:
    """Bytes of each graph the bundle will hold, by role ("encoder", "encoder data" for its
    external weights, "head", "classifier"), from the converted files."""
    onnx_dir = source.need("onnx")
    files = json.loads((onnx_dir / "onnx_info.json").read_text())["files"]
    roles = {"encoder": ENCODER_KEY[p.options.quantize]}
    roles |= {"head": "head"} if "fill-mask" in p.tasks else {}
    roles |= {"classifier": "classifier"} if "classify" in p.tasks else {}
    sizes = {}
    for role, key in roles.items():
        if key not in files:
            continue  # write_graphs says which graph is missing
        path = onnx_dir / files[key]
        sizes[role] = path.stat().st_size
        data = path.with_name(path.name + ".data")  # the converter's external-data file name
        if data.is_file():  # weights stored beside the graph: the browser reads them as one more file
            sizes[role + " data"] = data.stat().st_size
    return sizes


def check_fits(sizes: dict[str, int], quantize: str) -> dict[str, int]:
    """Refuse a model a browser cannot hold; return the estimate recorded in bundle.json.

    Raises:
        InputError: one line, with what to do instead.
    """
    what = "fp32" if quantize == "none" else quantize
    hint = ("package with --quantize int8 (or fp16)" if quantize == "none"
            else "this model is too large for a browser tab even quantized")
    for name, n in sizes.items():
        if n > MAX_FILE_BYTES:
            raise InputError(f"the {what} {name} is {n / 2**30:.2f} GiB, over the 2 GiB a browser can fetch "
                             f"into one ArrayBuffer; {hint}")
    graphs: dict[str, int] = {}
    for name, n in sizes.items():
        key = name.removesuffix(" data")
        graphs[key] = graphs.get(key, 0) + n
    peak = sum(graphs.values()) + max(graphs.values()) + WORKING_BYTES
    if peak > WASM_MEMORY_BYTES:
        raise InputError(f"the {what} graphs ({sum(graphs.values()) / 2**30:.2f} GiB) need about "
                         f"{peak / 2**30:.2f} GiB of WebAssembly memory to load, over the 4 GiB of wasm32; {hint}")
    return {"graph_bytes": sum(graphs.values()), "wasm_peak_estimate_bytes": peak,
            "wasm_memory_limit_bytes": WASM_MEMORY_BYTES}


def package_web(source: Converted, out: Path, p: Plan, say) -> dict[str, Any]:
    """Write the web bundle into ``out``; return bundle.json's content."""
    o = p.options
    memory = check_fits(graph_sizes(source, p), o.quantize)  # before minutes of work
    modules = web_runtime(say=say)
    pooling = o.pooling or "mean"  # embeddings are always pooled inside the graph here
    say(f"writing the {o.quantize if o.quantize != 'none' else 'fp32'} encoder with in-graph {pooling} pooling ...")
    graphs = write_graphs(source, p, out, pooling=pooling)
    tok = write_tokenizer(source.need("onnx"), out)
    write_runner(out)
    packages = copy_vendor(modules, out)
    for rel, name in TEMPLATES.items():
        (out / rel).write_text(template(name), encoding="utf-8")
    external = {role: graphs[role] + ".data" for role in ("encoder", "head", "classifier")
                if graphs.get(role) and (out / (graphs[role] + ".data")).is_file()}
    (out / "README.md").write_text(readme(p, source), encoding="utf-8")
    # onnx writes external data owner-only (0600); a web server running as another user must
    # read every file, so each gets the mode an ordinary new file gets here (umask applied)
    mode = (out / "README.md").stat().st_mode & 0o777
    for f in out.rglob("*"):
        if f.is_file() and f.stat().st_mode & 0o777 != mode:
            f.chmod(mode)
    bundle = base_bundle(source, p, engine="onnxruntime-web", runner="encoderkit.mjs",
                         graphs={"encoder": graphs["encoder"], "head": graphs["head"],
                                 "classifier": graphs["classifier"]},
                         pooling_in_graph=True, tokenizer=tok)
    bundle["pooling"]["default"] = pooling
    bundle["outputs"] = ["last_hidden_state", "sentence_embedding"]
    bundle["web"] = {
        "packages": packages,
        "vendor": {"ort": "vendor/ort/ort.wasm.min.mjs", "ort_glue": "vendor/ort/ort-wasm-simd-threaded.mjs",
                   "ort_wasm": "vendor/ort/ort-wasm-simd-threaded.wasm",
                   "tokenizers": "vendor/tokenizers/tokenizers.min.mjs"},
        "external_data": external,
        "threads": o.threads,  # None: min(4, navigator.hardwareConcurrency); 1 without isolation
        "max_tokens_per_batch": 1024,
        "memory": memory,
        "headers": dict(ISOLATION_HEADERS),
    }
    say("torch reference outputs on the probe texts ...")
    embed, fill = probe_texts(source.spec, p.tasks, p.max_length)
    probes = reference_outputs(source, p, embed, fill, pooling, o.normalize)
    return finish(out, bundle, probes, o.quantize, say)


# The headers that make a page cross-origin isolated (SharedArrayBuffer, hence wasm threads).
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}


def readme(p: Plan, source: Converted) -> str:
    headers = "\n".join(f"    {k}: {v}" for k, v in ISOLATION_HEADERS.items())
    return f"""# {p.name}: an encoderkit web bundle

{', '.join(p.tasks)} in the browser on onnxruntime-web {WEB_PACKAGES['onnxruntime-web']} (wasm), tokenized by
@huggingface/tokenizers {WEB_PACKAGES['@huggingface/tokenizers']}; nothing is fetched from anywhere but this folder.

    python3 serve.py            # http://127.0.0.1:8000/ with the headers below (stdlib only)

The page must be served over http(s): onnxruntime-web cannot start from file://. The file checks
(SubtleCrypto) need a secure context: https, or http on localhost / 127.0.0.1. Any static server
works; for more than one wasm thread the page must be cross-origin isolated, i.e. served with

{headers}

(without them the page still works, on one thread). nginx: `add_header Cross-Origin-Opener-Policy
same-origin always; add_header Cross-Origin-Embedder-Policy require-corp always;` and `types {{
application/wasm wasm; text/javascript mjs; }}`. GitHub Pages cannot set headers: it runs single-threaded.

From another page of the same origin:

    import * as ek from "./encoderkit.mjs";
    await ek.load(new URL("./", import.meta.url));
    await ek.embed(["a text", "another"]);          // as `encoderkit embed --json`
    await ek.fillMask("Paris is the {source.spec.mask_token} of France.", 5);
    await ek.classify(["a text"], 1);               // as `encoderkit classify --json`
    await ek.selfTest();                            // the probes in bundle.json

Every file bundle.json lists is checked by sha256 before a session is created; a changed file is an
error on the page. `python run.py --self-test` checks the same graphs with onnxruntime (pip install
-r requirements.txt).
"""


def serve_module() -> ModuleType:
    """The bundle's ``serve.py`` (the template), imported: ``make_server`` / ``serve``."""
    path = Path(__file__).with_name("templates") / "serve.py"
    spec = importlib.util.spec_from_file_location("encoderkit_bundle_serve", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def serve(bundle: Path, port: int = 8000, isolation: bool = True, say=print) -> None:
    """Serve a web bundle on 127.0.0.1 until interrupted.

    Raises:
        ArtifactError: not a web bundle.
    """
    bundle = Path(bundle)
    try:
        info = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ArtifactError(f"{bundle} has no readable bundle.json; make one with encoderkit package CONVERTED "
                            "--target web --out DIR") from None
    if info.get("target") != "web":
        raise ArtifactError(f"{bundle} is a {info.get('target')!r} bundle; serve-bundle serves --target web bundles")
    serve_module().serve(bundle, port=port, isolation=isolation, say=say)
