"""What a user of the installed package sees: the wheel carries every file the CLI needs, and
third-party chatter stays out of normal output."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from encoderkit.conversion import convert

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.xdist_group("packaging")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_roberta, tmp_path_factory):
    out = tmp_path_factory.mktemp("pkg") / "conv"
    convert(tiny_roberta, ["safetensors", "onnx"], out)
    return out


def test_installed_wheel_runs_bench_without_the_checkout(tiny_onnx, tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("encoderkit-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    # a non-editable install of the wheel; its dependencies come from this environment's site
    # directory (added as a plain path: its editable-install hooks are not run)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the checkout leaks in
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True,
                   capture_output=True, timeout=300, env=env)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = subprocess.run([str(py), "-c", "import encoderkit, sys, json; print(encoderkit.__file__); "
                            "print(json.dumps(sys.path))"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True).stdout
    assert where.splitlines()[0].startswith(str(venv)), where
    path = [os.path.abspath(p or tmp_path) for p in json.loads(where.splitlines()[1])]
    assert str(REPO) not in path, f"the checkout must not be importable: {path}"
    out = tmp_path / "bench"
    p = subprocess.run([str(venv / "bin" / "encoderkit"), "bench", str(tiny_onnx), "--backends", "torch,onnx",
                        "--quick", "--out", str(out)], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    assert {"torch", "onnx"} <= set(report["results"]["fill-mask/short"])
    assert report["results"]["embed/corpus"]["_meta"]["texts"] > 0
    _every_subcommand(venv / "bin" / "encoderkit", tmp_path, env)


def _every_subcommand(exe: Path, tmp: Path, env: dict) -> None:
    """Every subcommand of the installed CLI runs from the wheel alone (a new subcommand must be
    added here: the list is checked against the parser's)."""
    from encoderkit.cli import build_parser

    t = str(tmp)
    data = str(REPO / "encoderkit" / "data" / "topics_train.jsonl")
    runs = {
        "init-random": [["init-random", f"{t}/m", "--size", "tiny"],
                        ["init-random", f"{t}/cls", "--head", "classification", "--labels", "a,b"],
                        ["init-random", f"{t}/ner", "--head", "token-classification"],
                        ["init-random", f"{t}/qa", "--head", "question-answering", "--arch", "bert"]],
        "info": [["info", f"{t}/m", "--json"]],
        "convert": [["convert", f"{t}/m", "--to", "safetensors,onnx", "--out", f"{t}/c"]],
        "fill-mask": [["fill-mask", f"{t}/c", "a <mask> b", "--backend", "onnx", "--json"]],
        "embed": [["embed", f"{t}/c", "a b", "--json"]],
        "classify": [["classify", f"{t}/cls", "a b", "--json"]],
        "ner": [["ner", f"{t}/ner", "Ada met Bob.", "--aggregation", "simple", "--json"]],
        "qa": [["qa", f"{t}/qa", "--question", "Who?", "--context", "Ada met Bob.", "--json"]],
        "attention": [["attention", f"{t}/c", "a b c", "--backend", "onnx", "--out", f"{t}/v.html"]],
        "package": [["package", f"{t}/c", "--target", "onnx", "--out", f"{t}/bundle"]],
        "serve-bundle": [["serve-bundle", "--help"]],
        "finetune": [["finetune", f"{t}/m", "--data", data, "--method", "full", "--max-steps", "1",
                      "--out", f"{t}/ft"]],
        "bench": [],  # run above
    }
    sub = build_parser()._subparsers._group_actions[0].choices
    assert set(runs) == set(sub), f"subcommands not run from the wheel: {sorted(set(sub) - set(runs))}"
    for name, commands in runs.items():
        for cmd in commands:
            p = subprocess.run([str(exe), *cmd, "--quiet"] if cmd[-1] != "--help" else [str(exe), *cmd],
                               capture_output=True, text=True, cwd=tmp, env=env, timeout=900)
            assert p.returncode == 0, f"{' '.join(cmd)}: {p.stderr[-2000:]}"
            if "--json" in cmd:
                json.loads(p.stdout)  # stdout carries only the result


def test_third_party_chatter_is_shown_only_with_verbose(tiny_roberta, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "encoderkit.cli", "convert", str(tiny_roberta), "--to", "onnx"]
    quiet = subprocess.run(cmd + ["--out", str(tmp_path / "a")], capture_output=True, text=True, env=env,
                           timeout=600)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stdout.strip() == f"wrote {tmp_path / 'a'} (report: {tmp_path / 'a' / 'report.md'})"
    for noise in ("torchvision", "Warning", "absl", "onnxscript"):
        assert noise not in quiet.stderr, quiet.stderr
    assert not re.search(r"^[WIEF]\d{4} ", quiet.stderr, re.M), quiet.stderr  # glog/absl lines
    loud = subprocess.run(cmd + ["--out", str(tmp_path / "b"), "--verbose"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert loud.returncode == 0 and "torchvision is not installed" in loud.stderr


def test_the_wheel_version_is_the_package_version():
    """pyproject's version names the wheel and the release directory; encoderkit.__version__ is what
    `--version`, manifests and reports print: one number (they said 0.1.0 and 0.2.0 once)."""
    import tomllib

    import encoderkit

    declared = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["version"]
    assert declared == encoderkit.__version__, f"pyproject.toml {declared} != encoderkit.__version__ {encoderkit.__version__}"
