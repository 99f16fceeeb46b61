"""Target ``node``: the onnx bundle plus ``run.mjs`` for Node.js and a pinned ``package.json``.

``run.mjs`` runs the same graphs on ``onnxruntime-node`` and tokenizes with
``@huggingface/tokenizers`` (tokenizers.js) from the bundle's own tokenizer.json, offline. It
offers run.py's commands (embed, fill-mask, classify, ner, qa, tokenize, --self-test) with the same
JSON output (ner / qa: offsets rebuilt from the tokenizer's parts, see run.mjs's "ner and qa").
Install with ``npm install --ignore-scripts``: onnxruntime-node 1.30's postinstall fetches CUDA
binaries from outside the npm registry (and fails offline), while its CPU binaries ship inside
the package. The Python runner stays in the bundle too, so the package-time self-test (and a
user without Node) can check it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import Converted, Plan, template
from .onnx_bundle import package_onnx

def package_node(source: Converted, out: Path, p: Plan, say) -> dict[str, Any]:
    """Write the node bundle into ``out``; return bundle.json's content."""
    (out / "run.mjs").write_text(template("run.mjs"), encoding="utf-8")
    (out / "package.json").write_text(template("package.json"), encoding="utf-8")
    return package_onnx(source, out, p, say)
