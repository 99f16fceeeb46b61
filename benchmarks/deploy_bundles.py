"""Bundle sizes, runner load time, single-text latency and peak RSS per target and quantization.

    PYTHONPATH=. python -m benchmarks.deploy_bundles CONVERTED_DIR [--targets onnx,node,tflite] \
        [--quantize none,int8] [--node-modules DIR] [--out results.md]

Every figure comes from the bundle's own runner (`run.py --self-test --measure`, and
`node run.mjs --self-test --measure` when --node-modules points at an installed node_modules):
load = reading bundle.json + sha256 of every file + tokenizer + sessions; latency = median of
5 embed calls on one short text (10 tokens), after the self-test warmed the sessions up.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from encoderkit.deploy import package


def measure_node(bundle: Path, node_modules: Path) -> dict:
    (bundle / "node_modules").symlink_to(node_modules.resolve())
    res = subprocess.run(["node", "run.mjs", "--self-test", "--measure"], cwd=bundle, capture_output=True, text=True)
    if res.returncode:
        return {"error": res.stderr.strip().splitlines()[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("converted")
    ap.add_argument("--targets", default="onnx,tflite")
    ap.add_argument("--quantize", default="none,int8")
    ap.add_argument("--node-modules", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for target in a.targets.split(","):
            for q in a.quantize.split(","):
                out = Path(tmp) / f"{target}-{q}"
                try:
                    b = package(a.converted, target, out, quantize=q)
                except Exception as e:  # noqa: BLE001 - report and go on
                    rows.append((target, q, f"failed: {e}"[:120], "", "", ""))
                    continue
                fp = b["footprint"]
                rows.append((f"{target} (run.py)", q, f"{fp['bundle_bytes'] / 1e6:.1f}", f"{fp['load_seconds']:.2f}",
                             f"{fp['embed_one_text_seconds'] * 1e3:.1f}", f"{fp['peak_rss_mb']:.0f}"))
                if target == "node" and a.node_modules:
                    n = measure_node(out, a.node_modules)
                    if "error" in n:
                        rows.append(("node (run.mjs)", q, n["error"][:100], "", "", ""))
                    else:
                        rows.append(("node (run.mjs)", q, f"{fp['bundle_bytes'] / 1e6:.1f}", f"{n['load_seconds']:.2f}",
                                     f"{n['embed_one_text_seconds'] * 1e3:.1f}", f"{n['peak_rss_mb']:.0f}"))
                shutil.rmtree(out, ignore_errors=True)
    lines = [f"Bundles of `{a.converted}`", "",
             "| target (runner) | quantize | bundle MB | load s | one text ms | peak RSS MB |",
             "|---|---|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        a.out.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
