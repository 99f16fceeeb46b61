#!/usr/bin/env python3
"""The release pipeline: a checkpoint (and this package) in, a verified release directory out.

    python ci/release.py MODEL [--out release/] [--version V] [--stages ...|--skip-stages ...]
                         [--bench quick|full] [--targets onnx,tflite,...] [--reuse-site DIR]

Seven stages, in order; each prints its name, time and result, and the first failure stops the
run with one line naming the stage (exit 1):

1. build    ``python -m build`` (sdist + wheel), ``twine check``, and the wheel holds every
            package-data file of the checkout (workloads, corpus, viewer assets, deploy templates).
2. install  a fresh venv installs the wheel (not the checkout) with every extra the wheel declares
            (its METADATA's Provides-Extra: a new extra cannot be forgotten here); the unit tests run
            against the installed package from a copy of tests/, with a guard plugin asserting the
            checkout is not on ``sys.path``; then CLI smoke commands (init-random, fill-mask, embed,
            convert, bench --quick, attention, package) run from the venv's ``encoderkit`` script.
3. convert  ``encoderkit convert MODEL --to all --quantize int8,fp16``.
4. parity   ``encoderkit.verify.parity.parity_matrix`` -> parity.md + parity.json; any failing cell fails.
5. bench    ``encoderkit bench`` (``--bench quick``: the quick workloads, one repeat) -> tables, plots.
6. package  ``encoderkit package`` per ``--targets``, then each bundle's ``run.py --self-test``.
7. notes    RELEASE.md, release.json, SHA256SUMS.

Everything is written into a temporary directory beside ``OUT/<model>-<version>`` and renamed
into place only when every stage passed (a failed release publishes nothing). Scratch space (the
venv, the copied tests) lives in a second temporary directory that is always removed.

Test hook (not a flag; for tests/test_release.py): ``ENCODERKIT_RELEASE_PERTURB=FORMAT[:DELTA]``
adds DELTA (default 0.05) to one weight (layer 0's FFN output bias, element 0) of that format's converted output after the
convert stage and re-hashes its manifest, i.e. a converter bug that convert's own check missed;
the parity stage must then fail naming the backend and the metric. Supported: ``flax``.

No logic lives in CI YAML: the workflow, ``ci/release.sh`` and ``make release`` call this file.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # the pipeline itself runs on the checkout; the install stage tests the wheel
    sys.path.insert(0, str(REPO))

STAGES = ("build", "install", "convert", "parity", "bench", "package", "notes")
PERTURB_ENV = "ENCODERKIT_RELEASE_PERTURB"
# distributions whose versions every release records (RELEASE.md and release.json)
TOOLS = ("encoderkit", "torch", "transformers", "onnx", "onnxruntime", "onnxscript", "tensorflow",
         "tensorflow-cpu", "jax", "flax", "tokenizers", "safetensors", "numpy", "ai-edge-litert", "build",
         "twine")
# The install stage installs the wheel with every extra the wheel itself declares (``wheel_extras``):
# the unit tests need all of them (tests/test_environment.py checks, in the installed venv, that every
# module a test imports can be imported). A hand-kept list here once lacked train and ctranslate2.
# the unit tests run against the wheel: all of tests/ except test_packaging.py, which builds its own
# wheel from the source tree (the copy the install stage runs from has no source, by design)
DEFAULT_INSTALL_TESTS = "tests --ignore=tests/test_packaging.py"


class StageFailure(Exception):
    """A stage failed; the message is the one-line reason."""


@dataclass
class Context:
    args: argparse.Namespace
    model: str
    name: str  # <model>-<version>
    tmp: Path  # becomes the release directory
    work: Path  # scratch, removed at the end
    stages: list[str]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def converted(self) -> Path:
        return self.tmp / "converted"

    def log(self, stage: str) -> Path:
        (self.tmp / "logs").mkdir(exist_ok=True)
        return self.tmp / "logs" / f"{stage}.log"


def _env(with_checkout: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if with_checkout:
        env["PYTHONPATH"] = str(REPO)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return env


def sh(ctx: Context, stage: str, cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
       what: str | None = None, timeout: float | None = None) -> str:
    """Run ``cmd``, appending its output to the stage's log; a non-zero exit is a StageFailure
    quoting the command's last meaningful output line."""
    log = ctx.log(stage)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(map(str, cmd))}\n")
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env or _env(), cwd=cwd,
                       timeout=timeout)
    with open(log, "a") as f:
        f.write(p.stdout + p.stderr + f"[exit {p.returncode}]\n")
    if p.returncode != 0:
        tail = [ln.strip() for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
        last = next((ln for ln in reversed(tail) if not ln.startswith(("warnings.warn", "  "))), "")
        raise StageFailure(f"{what or Path(cmd[0]).name + ' ' + str(cmd[1])} exited {p.returncode}: "
                           f"{last[:300]} (log: logs/{stage}.log)")
    return p.stdout


def cli(ctx: Context, stage: str, *args: Any, **kw: Any) -> str:
    """``python -m encoderkit.cli ARGS`` on the checkout (the pipeline's own encoderkit)."""
    return sh(ctx, stage, [sys.executable, "-m", "encoderkit.cli", *map(str, args)],
              what=f"encoderkit {args[0]}", **kw)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------- stages
def package_data_files() -> list[str]:
    """Every non-Python file of the encoderkit package in the checkout (git-tracked when git is
    there): what the CLI reads at run time, which the wheel must carry."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "encoderkit"], capture_output=True, text=True,
                             check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        out = [p.relative_to(REPO).as_posix() for p in (REPO / "encoderkit").rglob("*") if p.is_file()]
    return sorted(f for f in out if not f.endswith(".py") and "__pycache__" not in f and (REPO / f).is_file())


def wheel_missing(wheel: Path) -> list[str]:
    """Package-data files of the checkout that ``wheel`` lacks."""
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    return [f for f in package_data_files() if f not in names]


def wheel_extras(wheel: Path) -> list[str]:
    """The extras ``wheel`` declares (Provides-Extra in its METADATA), less ``all`` (their union)."""
    with zipfile.ZipFile(wheel) as z:
        (meta,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        lines = z.read(meta).decode("utf-8").splitlines()
    extras = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Provides-Extra:")]
    if not extras:
        raise StageFailure(f"{wheel.name} declares no extras (METADATA has no Provides-Extra)")
    return [e for e in extras if e != "all"]


def stage_build(ctx: Context) -> str:
    dist = ctx.tmp / "dist"
    cmd = [sys.executable, "-m", "build", "--outdir", str(dist), str(REPO)]
    if ctx.args.no_build_isolation:
        cmd.insert(3, "--no-isolation")
    # build from a copy: setuptools writes build/ and *.egg-info into the source tree otherwise
    src = ctx.work / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                              "__pycache__", "release", ".pytest_cache",
                                                              "demo-out", "bench-out", "node_modules"))
    cmd[-1] = str(src)
    sh(ctx, "build", cmd, what="python -m build")
    wheels, sdists = sorted(dist.glob("*.whl")), sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise StageFailure(f"expected one wheel and one sdist in dist/, got {[p.name for p in dist.iterdir()]}")
    sh(ctx, "build", [sys.executable, "-m", "twine", "check", "--strict", *wheels, *sdists], what="twine check")
    missing = wheel_missing(wheels[0])
    if missing:
        raise StageFailure(f"{wheels[0].name} lacks {len(missing)} file(s) the CLI reads: {', '.join(missing[:5])} "
                           "(add them to [tool.setuptools.package-data] in pyproject.toml)")
    ctx.facts["wheel"] = wheels[0].name
    ctx.facts["sdist"] = sdists[0].name
    return f"{wheels[0].name} ({wheels[0].stat().st_size / 1e6:.2f} MB), {sdists[0].name}; twine check passed"


GUARD = '''"""Loaded by the release's install stage (-p release_guard): the tests must import the
installed wheel, never the checkout."""
import os, sys


def _check():
    import encoderkit
    checkout = os.path.realpath(os.environ["ENCODERKIT_RELEASE_CHECKOUT"])
    on_path = [p for p in sys.path if os.path.realpath(p or os.getcwd()) == checkout]
    assert not on_path, f"the checkout {checkout} is on sys.path: {sys.path}"
    where = os.path.realpath(encoderkit.__file__)
    assert not where.startswith(checkout + os.sep), f"encoderkit imported from the checkout: {where}"
    assert os.path.realpath(sys.prefix) in where, f"encoderkit not from the release venv: {where}"
    return where


def pytest_sessionstart(session):
    print(f"release guard: encoderkit from {_check()}; checkout not on sys.path")


def pytest_sessionfinish(session, exitstatus):
    _check()
'''


def stage_install(ctx: Context) -> str:
    wheel = ctx.tmp / "dist" / ctx.facts.get("wheel", "")
    if not wheel.is_file():
        found = sorted((ctx.tmp / "dist").glob("*.whl")) if (ctx.tmp / "dist").is_dir() else []
        if not found:
            raise StageFailure("no wheel to install (run the build stage)")
        wheel = found[0]
    venv = ctx.work / "venv"
    sh(ctx, "install", [sys.executable, "-m", "venv", venv], what="python -m venv")
    py, ek = venv / "bin" / "python", venv / "bin" / "encoderkit"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    env = _env(with_checkout=False)
    if ctx.args.reuse_site:
        # The wheel itself is installed for real (no deps); the heavy dependencies (torch, TF, JAX)
        # come from an existing site-packages added as a plain path (.pth): its own .pth hooks,
        # e.g. an editable encoderkit, are not run, so the only encoderkit importable is the wheel.
        Path(site, "zz_release_reuse.pth").write_text(str(Path(ctx.args.reuse_site).resolve()) + "\n")
        sh(ctx, "install", [py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], env=env,
           what="pip install wheel")
        how = f"wheel --no-deps, dependencies from {ctx.args.reuse_site}"
    else:
        torch_pin = os.environ.get("TORCH_PIN", "torch==2.13.0")  # the CPU wheel, as in the Makefile
        extras = ",".join(wheel_extras(wheel))
        sh(ctx, "install", [py, "-m", "pip", "install", "-q", f"{wheel}[{extras}]", torch_pin], env=env,
           what="pip install wheel[extras]")
        how = f"wheel[{extras}] with its dependencies"
    # the tests run from a copy outside the checkout, so their rootdir puts nothing of it on sys.path
    run = ctx.work / "tests-run"
    run.mkdir()
    # tests import parity_tests' helpers and the benchmarks' timing (test_viewer_browser), and read
    # repository documents (the layer table in docs/ARCHITECTURE.md, the README blocks make bench
    # rewrites, ci/release.py's own source): repository files, not in the wheel; encoderkit itself
    # still comes from the installed wheel (the tests find its code and data through encoderkit.__file__)
    for d in ("tests", "parity_tests", "benchmarks", "docs", "ci"):
        if (REPO / d).is_dir():
            shutil.copytree(REPO / d, run / d, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):  # pyproject: markers, addopts, filterwarnings
        shutil.copy2(REPO / f, run / f)
    (run / "release_guard.py").write_text(GUARD)
    tenv = {**env, "PYTHONPATH": str(run), "ENCODERKIT_RELEASE_CHECKOUT": str(REPO),
            "ENCODERKIT_RELEASE_INSTALL": "1"}
    selection = (ctx.args.install_tests or DEFAULT_INSTALL_TESTS).split()
    pytest = [py, "-m", "pytest", "-p", "release_guard", "-p", "no:cacheprovider", "-q", "-m", "not slow"]
    collected = ""
    if selection != DEFAULT_INSTALL_TESTS.split():
        # a narrower selection still proves every test module of the default one imports against
        # the wheel (a test importing repository code the copy lacks failed only the full run once)
        col = sh(ctx, "install", [*pytest, "--collect-only", *DEFAULT_INSTALL_TESTS.split()],
                 env=tenv, cwd=run, what="collect the default test selection (installed wheel)")
        n = next((ln.split()[0] for ln in reversed(col.splitlines()) if " tests collected" in ln
                  or " selected" in ln), "?")
        collected = f"default selection collects ({n} tests); "
    out = sh(ctx, "install", [*pytest, *selection], env=tenv, cwd=run, what="unit tests (installed wheel)")
    summary = next((ln.strip("= ") for ln in reversed(out.splitlines()) if " passed" in ln or " failed" in ln), "?")
    if "release guard: encoderkit from" not in out:
        raise StageFailure("the sys.path guard did not run (pytest -p release_guard)")
    # the CLI's data files from the installed wheel: workloads (bench), corpus (convert's probes),
    # viewer assets (attention), deploy templates (package)
    smoke = ctx.work / "smoke"
    steps = [["init-random", smoke / "tiny", "--size", "tiny"],
             ["fill-mask", smoke / "tiny", "Paris is the <mask> of France."],
             ["embed", smoke / "tiny", "hello world"],
             ["convert", smoke / "tiny", "--to", "safetensors,onnx", "--out", smoke / "conv"],
             ["bench", smoke / "conv", "--quick", "--backends", "torch,onnx", "--repeats", "1", "--out",
              smoke / "bench"],
             ["attention", smoke / "tiny", "hello world", "--out", smoke / "att.html"],
             ["package", smoke / "conv", "--target", "onnx", "--out", smoke / "bundle", "--quiet"]]
    for step in steps:
        sh(ctx, "install", [ek, *step], env=env, cwd=ctx.work, what=f"installed `encoderkit {step[0]}`")
    return f"{how}; {collected}tests: {summary}; CLI smoke: {', '.join(s[0] for s in steps)}"


def stage_convert(ctx: Context) -> str:
    t = time.perf_counter()
    if ctx.args.from_converted:  # an earlier `convert` output: verified and copied, not redone
        from encoderkit.storage.manifest import verify_manifest

        verify_manifest(Path(ctx.args.from_converted))
        shutil.copytree(ctx.args.from_converted, ctx.converted)
    else:
        cli(ctx, "convert", "convert", ctx.model, "--to", "all", "--quantize", "int8,fp16", "--out",
            ctx.converted, "--quiet")
    spec = json.loads((ctx.converted / "safetensors" / "config.json").read_text()) \
        if (ctx.converted / "safetensors" / "config.json").is_file() else {}
    manifest = json.loads((ctx.converted / "manifest.json").read_text())
    ctx.facts["formats"] = manifest["formats"]
    ctx.facts["convert_seconds"] = time.perf_counter() - t
    ctx.facts["config"] = {k: spec.get(k) for k in ("model_type", "num_hidden_layers", "hidden_size",
                                                    "num_attention_heads", "vocab_size",
                                                    "max_position_embeddings") if k in spec}
    perturb = os.environ.get(PERTURB_ENV)
    if perturb:
        perturbed = _perturb(ctx.converted, perturb)
        (ctx.log("convert")).open("a").write(f"TEST HOOK {PERTURB_ENV}={perturb}: perturbed {perturbed}\n")
    return f"{', '.join(manifest['formats'])} in {dir_bytes(ctx.converted) / 1e6:.1f} MB"


def _perturb(converted: Path, spec: str) -> str:
    """The failure-injection hook: shift one weight tensor of a format's output, re-hash the manifest."""
    import numpy as np

    from encoderkit.storage.manifest import read_manifest, write_manifest
    from encoderkit.storage.mapping import flatten, nest

    fmt, _, delta = spec.partition(":")
    delta = float(delta or 0.05)
    if fmt != "flax":
        raise StageFailure(f"{PERTURB_ENV}: only 'flax' is supported, got {fmt!r}")
    from flax import serialization

    from encoderkit.backends.flax.model import PARAMS_FILE

    f = converted / "flax" / PARAMS_FILE
    flat = flatten(serialization.msgpack_restore(f.read_bytes()))
    # the first encoder layer's feed-forward output bias: every later activation moves with it
    key = sorted(k for k in flat if k.endswith("output/dense/bias") and "layer/0/" in k)[0]
    bias = np.array(flat[key], dtype=np.float32)
    bias[0] += delta  # one element: a uniform shift would vanish in the LayerNorm that follows
    flat[key] = bias
    f.write_bytes(serialization.msgpack_serialize(nest(flat)))
    manifest = read_manifest(converted)
    write_manifest(converted, {k: v for k, v in manifest.items() if k not in ("files", "encoderkit_manifest")})
    return f"flax {key}[0] += {delta}"


def stage_parity(ctx: Context) -> str:
    from encoderkit.core.logs import captured
    from encoderkit.verify.parity import parity_matrix, write_json, write_markdown

    with captured():  # frameworks' own chatter (TF's absl lines) stays out of the stage lines
        m = parity_matrix(ctx.converted)
    m = dataclasses.replace(m, model=f"{ctx.model} (converted/)")  # not the temp dir's path
    write_markdown(m, ctx.tmp / "parity.md")
    write_json(m, ctx.tmp / "parity.json")
    ctx.facts["parity"] = {"cells": len(m.cells), "failed": len(m.failures()), "backends": list(m.backends)}
    if not m.passed:
        bad = m.failures()
        ctx.log("parity").write_text(m.to_markdown())  # the whole matrix, kept beside the failure line
        more = f" (+{len(bad) - 1} more failing cells)" if len(bad) > 1 else ""
        raise StageFailure(f"{bad[0].describe()}{more} (log: logs/parity.log)")
    return f"{len(m.cells)} cells over {', '.join(m.backends)}: all within bounds"


def stage_bench(ctx: Context) -> str:
    out = ctx.tmp / "bench"
    args = ["bench", ctx.converted, "--out", out]
    if ctx.args.bench == "quick":
        args += ["--quick", "--repeats", "1"]
    cli(ctx, "bench", *args)
    report = json.loads((out / "bench.json").read_text())
    return f"{ctx.args.bench}: {len(report['results'])} workloads x {len(report['systems'])} systems, " \
           f"{len(list(out.glob('*.png')))} plots"


def stage_package(ctx: Context) -> str:
    done = []
    for target in [t for t in ctx.args.targets.split(",") if t]:
        out = ctx.tmp / "bundles" / target
        out.parent.mkdir(exist_ok=True)
        cli(ctx, "package", "package", ctx.converted, "--target", target, "--out", out, "--quiet")
        runners = sorted(out.rglob("run.py"))
        if not runners:
            raise StageFailure(f"bundle {target} has no run.py to self-test")
        for r in runners:
            sh(ctx, "package", [sys.executable, r, "--self-test"], env=_env(with_checkout=False), cwd=r.parent,
               what=f"{target} bundle {r.relative_to(out)} --self-test")
        ctx.facts.setdefault("bundles", {})[target] = dir_bytes(out)
        done.append(f"{target} {dir_bytes(out) / 1e6:.1f} MB")
    return ", ".join(done) + "; every self-test passed" if done else "no targets"


def tool_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for t in TOOLS:
        try:
            out[t] = version(t)
        except PackageNotFoundError:
            out[t] = None
    return out


def stage_notes(ctx: Context) -> str:
    from encoderkit.storage.files import sha256_file

    versions = tool_versions()
    release = {"name": ctx.name, "model": ctx.model, "version": ctx.args.version,
               "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
               "tools": versions, "stages": ctx.results, "facts": ctx.facts,
               "deterministic": DETERMINISM}
    (ctx.tmp / "release.json").write_text(json.dumps(release, indent=2, default=str) + "\n")
    (ctx.tmp / "RELEASE.md").write_text(render_notes(ctx, versions))
    files = sorted(p for p in ctx.tmp.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    (ctx.tmp / "SHA256SUMS").write_text("".join(f"{sha256_file(p)}  {p.relative_to(ctx.tmp).as_posix()}\n"
                                                for p in files))
    return f"{len(files)} files hashed into SHA256SUMS; RELEASE.md, release.json"


# Which converted files re-running the same conversion reproduces byte for byte: measured by
# tests/test_release.py::test_conversion_determinism (tiny roberta, convert --to all --quantize
# int8,fp16 twice, every file's sha256 compared).
DETERMINISM = {
    "safetensors/*": "identical",
    "flax/*": "identical (msgpack of the parameter tree)",
    "onnx/*.onnx (fp32, int8, fp16, head, analysis graphs)": "identical (same exporter, same weights)",
    "tf/saved_model/1/variables/*": "identical",
    "tf/saved_model/1/saved_model.pb": "identical in most runs, not promised: it differed once in a "
                                       "clone run under load (traced function names differ between processes)",
    "tf/saved_model/1/fingerprint.pb": "differs: TensorFlow writes a random uuid into every "
                                       "SavedModel fingerprint (all its hashes are equal)",
    "ctranslate2/*/model.bin": "differs between two conversions of the same weights (CTranslate2's own "
                               "serialisation; cause not established)",
    "manifest.json": "differs only through fingerprint.pb's and model.bin's hashes",
    "report.md": "differs: it records conversion times",
}


def render_notes(ctx: Context, versions: dict[str, str | None]) -> str:
    cfg = ctx.facts.get("config", {})
    lines = [f"# {ctx.name}", "", f"Model `{ctx.model}` released with encoderkit {versions.get('encoderkit')}.", "",
             "## Model", ""]
    lines += [f"- {k.replace('_', ' ')}: {v}" for k, v in cfg.items()]
    if ctx.facts.get("formats"):
        lines.append(f"- formats: {', '.join(ctx.facts['formats'])} (`converted/`, report `converted/report.md`)")
    lines += ["", "## Stages", "", "| stage | result | seconds |", "|---|---|---|"]
    for s, r in ctx.results.items():
        lines.append(f"| {s} | {r['summary']} | {r['seconds']:.1f} |")
    if (ctx.tmp / "parity.md").is_file():
        body = (ctx.tmp / "parity.md").read_text().split("\n", 2)[2]
        lines += ["", "## Parity matrix (parity.md, parity.json)", "", body.strip()]
    if (ctx.tmp / "bench" / "bench.md").is_file():
        lines += ["", f"## Benchmark ({ctx.args.bench}; bench/bench.md, bench/bench.json)", ""]
        bench = (ctx.tmp / "bench" / "bench.md").read_text().strip().replace("](", "](bench/")
        lines.append("\n".join("##" + ln if ln.startswith("#") else ln for ln in bench.splitlines()))  # nest
        for png in sorted((ctx.tmp / "bench").glob("*.png")):
            lines.append(f"\n![{png.stem}](bench/{png.name})")
    if ctx.facts.get("bundles"):
        lines += ["", "## Deployment bundles", "", "| target | size MB |", "|---|---|"]
        lines += [f"| {t} | {b / 1e6:.1f} |" for t, b in ctx.facts["bundles"].items()]
    lines += ["", "## Tool versions", "", "| tool | version |", "|---|---|"]
    lines += [f"| {k} | {v or 'not installed'} |" for k, v in versions.items()]
    lines += ["", "## Reproducibility", ""]
    lines += [f"- `{k}`: {v}" for k, v in DETERMINISM.items()]
    lines += ["", "Verify: `sha256sum -c SHA256SUMS` in this directory."]
    return "\n".join(lines) + "\n"


RUNNERS: dict[str, Callable[[Context], str]] = {
    "build": stage_build, "install": stage_install, "convert": stage_convert, "parity": stage_parity,
    "bench": stage_bench, "package": stage_package, "notes": stage_notes}


# ---------------------------------------------------------------------------------------- driver
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    import encoderkit

    p = argparse.ArgumentParser(prog="ci/release.py", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="checkpoint directory, packaged name (e.g. minilm) or hub id")
    p.add_argument("--out", default="release", type=Path, help="parent of <model>-<version>/ (default release/)")
    p.add_argument("--name", default=None, help="model name in the release directory (default: from MODEL)")
    p.add_argument("--version", default=encoderkit.__version__, help="release version (default: encoderkit's)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stages", default=None, help=f"comma list, run only these (of {','.join(STAGES)})")
    g.add_argument("--skip-stages", default=None, help="comma list of stages to skip")
    p.add_argument("--bench", choices=["quick", "full"], default="quick")
    p.add_argument("--targets", default="onnx", help="comma list of `encoderkit package` targets (default onnx)")
    p.add_argument("--reuse-site", default=None, metavar="DIR",
                   help="install stage: take the wheel's dependencies from this site-packages (a .pth "
                        "line) instead of installing them; the wheel itself is still installed. "
                        "Default: a full install of wheel[extras]")
    p.add_argument("--install-tests", default=None,
                   help=f"install stage: pytest selection run against the wheel (default: {DEFAULT_INSTALL_TESTS!r})")
    p.add_argument("--no-build-isolation", action="store_true",
                   help="build stage: use this environment's setuptools (no download)")
    p.add_argument("--from-converted", default=None, metavar="DIR",
                   help="convert stage: copy this verified `encoderkit convert` output of MODEL instead of "
                        "converting again")
    p.add_argument("--force", action="store_true", help="replace an existing release directory")
    a = p.parse_args(argv)
    chosen = [s for s in (a.stages or "").split(",") if s]
    skipped = [s for s in (a.skip_stages or "").split(",") if s]
    for s in chosen + skipped:
        if s not in STAGES:
            p.error(f"unknown stage {s!r}; stages are {', '.join(STAGES)}")
    a.selected = [s for s in STAGES if (not chosen or s in chosen) and s not in skipped]
    return a


def model_name(model: str) -> str:
    return Path(model.rstrip("/")).name.replace("/", "-") or "model"


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    name = f"{a.name or model_name(a.model)}-{a.version}"
    a.out.mkdir(parents=True, exist_ok=True)
    final = a.out / name
    if final.exists() and not a.force:
        print(f"release failed before any stage: {final} exists (use --force)", file=sys.stderr)
        return 2
    # the release is assembled beside its final place (same file system: the rename is atomic)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=a.out))
    work = Path(tempfile.mkdtemp(prefix="encoderkit-release-work-"))
    ctx = Context(a, a.model, name, tmp, work, a.selected)
    print(f"release {name}: stages {', '.join(a.selected)}", flush=True)
    t_all = time.perf_counter()
    try:
        for i, stage in enumerate(a.selected, 1):
            print(f"[{i}/{len(a.selected)}] {stage} ...", flush=True)
            t = time.perf_counter()
            try:
                summary = RUNNERS[stage](ctx)
            except StageFailure as e:
                reason = str(e)
            except Exception as e:  # noqa: BLE001 - any error stops the release with its stage's name
                reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            else:
                secs = time.perf_counter() - t
                ctx.results[stage] = {"seconds": round(secs, 2), "summary": summary}
                print(f"[{i}/{len(a.selected)}] {stage} ok in {secs:.1f} s: {summary}", flush=True)
                continue
            secs = time.perf_counter() - t
            print(f"[{i}/{len(a.selected)}] {stage} FAILED in {secs:.1f} s", flush=True)
            log = ctx.tmp / "logs" / f"{stage}.log"
            if log.is_file():  # kept outside OUT (nothing is published), for the reason's details
                kept = Path(tempfile.gettempdir()) / f"encoderkit-release-{name}-{stage}.log"
                shutil.copy2(log, kept)
                reason = reason.replace(f"logs/{stage}.log", str(kept))
            print(f"release failed at stage {stage}: {reason}", file=sys.stderr, flush=True)
            print(f"nothing published; {final} not written", file=sys.stderr, flush=True)
            return 1
        if final.exists():  # --force: the old release goes only once the new one is complete
            shutil.rmtree(final)
        tmp.rename(final)
        tmp = None
        print(f"published {final} ({dir_bytes(final) / 1e6:.1f} MB) in {time.perf_counter() - t_all:.1f} s",
              flush=True)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
