"""The package's layers, held: every import inside encoderkit/ (module level, inside functions and
under TYPE_CHECKING alike) points down the table below or stays in its own layer, applications
never import each other, backend folders never import each other, nothing imports the facade, and
the module graph has no cycle. docs/ARCHITECTURE.md shows this table as the test renders it.
"""
from __future__ import annotations

import ast
import importlib
import shutil
from pathlib import Path

import pytest

import encoderkit

ROOT = Path(__file__).resolve().parents[1]
# the package under test: the checkout's, or the installed wheel's in the release's install stage
PKG = Path(encoderkit.__file__).resolve().parent

# (layer, its modules (prefixes), what it is) -- bottom first; a layer may import itself and below.
LAYERS: list[tuple[str, tuple[str, ...], str]] = [
    ("core", ("encoderkit.core",),
     "errors, extras table, progress, logs, options, architecture and head records, spec, tokenization, "
     "batching, shipped texts, typed contracts"),
    ("storage", ("encoderkit.storage",),
     "checkpoint reading, weight mapping, HF writing, manifests and the sha256 gate, atomic dirs and locks, "
     "random checkpoints"),
    ("tasks", ("encoderkit.tasks",), "fill-mask, embed, classify, attentions, kernels; the TASKS table"),
    ("backends", ("encoderkit.backends",),
     "shared bases, one folder per backend (rows, export, runtime, model/layout), the catalog, the loader"),
    ("verify", ("encoderkit.verify",), "probes, metrics, comparisons, the gate, the parity matrix, reports"),
    ("conversion", ("encoderkit.conversion",), "load -> export -> gate -> save"),
    ("applications", ("encoderkit.batch", "encoderkit.viewer", "encoderkit.deploy", "encoderkit.finetune",
                      "encoderkit.bench", "encoderkit.demo"),
     "Python APIs; never each other"),
    ("cli", ("encoderkit.cli",), "one module per command family + common.py"),
    ("facade", ("encoderkit", "encoderkit._compat"), "load(), convert(); the 0.1 import paths (deprecated)"),
]
# Inside the backends layer: the shared bases, then the backend folders (never each other), then
# the catalog that assembles their rows, then the loader.
BACKEND_BASES = ("encoderkit.backends.base", "encoderkit.backends.converter", "encoderkit.backends.heads",
                 "encoderkit.backends.transformers_model")
BACKEND_FOLDERS = ("torch", "pytorch", "onnx", "tf", "flax", "ctranslate2")
BACKEND_ORDER = [BACKEND_BASES, tuple(f"encoderkit.backends.{f}" for f in BACKEND_FOLDERS),
                 ("encoderkit.backends.catalog",), ("encoderkit.backends.loading",)]


def module_name(path: Path, pkg: Path = PKG) -> str:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PKG.rglob("*.py")}


def _resolve(current: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The encoderkit modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "encoderkit"]
    if node.level:
        base = current.split(".") if is_package else current.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    if mod.split(".")[0] != "encoderkit":
        return []
    out = [mod]
    for a in node.names:  # `from . import x` / `from .pkg import mod`: the submodule itself
        if f"{mod}.{a.name}" in MODULES:
            out.append(f"{mod}.{a.name}")
    return out


def import_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets |= set(_resolve(name, path.name == "__init__.py", node))
        edges[name] = {t for t in targets if t != name}
    return edges


def layer_of(module: str) -> int:
    best, index = -1, None
    for i, (_, prefixes, _) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or (p != "encoderkit" and module.startswith(p + "."))) and len(p) > best:
                best, index = len(p), i
    if index is None:
        raise AssertionError(f"{module} is in no layer of LAYERS (add it to the table and to ARCHITECTURE.md)")
    return index


def _group(module: str, prefixes) -> str | None:
    return next((p for p in prefixes if module == p or module.startswith(p + ".")), None)


def _backend_rank(module: str) -> int | None:
    for rank, group in enumerate(BACKEND_ORDER):
        if _group(module, group):
            return rank
    return None


def violations() -> list[str]:
    out = []
    apps = LAYERS[[n for n, _, _ in LAYERS].index("applications")][1]
    folders = BACKEND_ORDER[1]
    for src, targets in import_edges().items():
        for dst in sorted(targets):
            if dst not in MODULES:
                out.append(f"{src} imports {dst}, which does not exist")
                continue
            ls, ld = layer_of(src), layer_of(dst)
            if dst == "encoderkit" and src != "encoderkit":
                out.append(f"{src} imports the facade (encoderkit): import the layer that implements it")
            elif ld > ls:
                out.append(f"{src} ({LAYERS[ls][0]}) imports {dst} ({LAYERS[ld][0]}): an upward import")
            elif ls == ld and LAYERS[ls][0] == "applications" and _group(src, apps) != _group(dst, apps):
                out.append(f"{src} imports {dst}: applications never import each other")
            elif ls == ld and LAYERS[ls][0] == "backends":
                rs, rd = _backend_rank(src), _backend_rank(dst)
                if rs is None or rd is None:
                    continue  # backends/__init__ (a docstring)
                if rd > rs:
                    out.append(f"{src} imports {dst}: upward inside the backends layer (bases < folders < "
                               "catalog < loading)")
                elif rs == rd == 1 and _group(src, folders) != _group(dst, folders):
                    out.append(f"{src} imports {dst}: backend folders never import each other")
    return out


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    edges = import_edges()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return found


def render_table() -> str:
    """The may-import table as docs/ARCHITECTURE.md shows it."""
    lines = ["| # | layer | modules | what | may import |", "|---|---|---|---|---|"]
    for i, (name, prefixes, what) in enumerate(LAYERS):
        below = ", ".join(n for n, _, _ in LAYERS[:i]) or "nothing of encoderkit"
        rule = {"applications": "itself (each application only itself), ",
                "backends": "itself (bases < folders < catalog < loading; folders never each other), "}.get(name, "itself, ")
        mods = ", ".join(f"`{p}`" for p in prefixes)
        lines.append(f"| {i} | {name} | {mods} | {what} | {rule}{below} |")
    return "\n".join(lines)


def test_every_import_points_down():
    bad = violations()
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    found = cycles()
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_architecture_md_shows_the_tests_table():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert render_table() in text, "docs/ARCHITECTURE.md's layer table differs from tests/test_layers.py:\n" + render_table()


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The walk is not vacuous: a core module importing the CLI (even inside a function) is caught,
    and so is a cycle."""
    assert len(MODULES) > 50, f"the walk found {len(MODULES)} modules under {PKG}"
    assert violations() == [] and cycles() == []
    copy = tmp_path / "encoderkit"  # the probes go into a copy, never into the package under test
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "core" / "_layer_probe.py").write_text("def f():\n    from ..cli import main\n    from . import _layer_probe2\n")
    (copy / "core" / "_layer_probe2.py").write_text("from ._layer_probe import f\n")
    monkeypatch.setitem(globals(), "MODULES", {module_name(p, copy): p for p in copy.rglob("*.py")})
    assert any("encoderkit.core._layer_probe (core) imports encoderkit.cli" in v for v in violations())
    assert ["encoderkit.core._layer_probe", "encoderkit.core._layer_probe2"] in cycles()


def test_every_catalog_target_resolves():
    """Every "module:attribute" string in the catalog (runtimes, converters, origin checks) names a
    real attribute, and imports (their frameworks are all installed in the test environment)."""
    from encoderkit.backends.catalog import BACKENDS, FORMATS

    targets = [b.runtime for b in BACKENDS.values()] + [f.converter for f in FORMATS.values()] \
        + [f.origin_check for f in FORMATS.values() if f.origin_check]
    for target in targets:
        module, attr = target.split(":")
        assert hasattr(importlib.import_module(module), attr), target


@pytest.mark.parametrize("old,new", [("encoderkit." + "runtimes", "encoderkit.backends.loading"),
                                     ("encoderkit." + "converters.onnx", "encoderkit.backends.onnx.export"),
                                     ("encoderkit." + "pipeline", "encoderkit.conversion")])
def test_old_import_paths_work_with_a_deprecation_warning(old, new):
    import subprocess
    import sys

    code = (f"import warnings, importlib\nwith warnings.catch_warnings(record=True) as w:\n"
            f"    warnings.simplefilter('always')\n    m = importlib.import_module({old!r})\n"
            f"    assert m is importlib.import_module({new!r}) or m.__getattr__\n"
            f"    assert any(issubclass(x.category, DeprecationWarning) and {new!r} in str(x.message) for x in w), w\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
