"""`import encoderkit` and the torch backend work without TensorFlow, JAX or ONNX Runtime; asking
for a missing backend names the extra to install."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

BLOCKED = ("tensorflow", "jax", "jaxlib", "flax", "onnxruntime", "onnx", "onnxscript", "onnx_ir")


def test_core_works_without_heavy_frameworks(tiny_roberta, tmp_path):
    # A site directory holding every installed package except the heavy frameworks.
    site = tmp_path / "site"
    site.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        top = entry.name.split("-")[0].split(".")[0].lower()
        if top not in BLOCKED and not top.startswith("tensorflow") and entry.suffix != ".pth":
            (site / entry.name).symlink_to(entry)
    script = textwrap.dedent(f"""
        import sys
        import encoderkit
        from encoderkit.core.errors import MissingDependencyError
        rt = encoderkit.load({str(tiny_roberta)!r})
        assert rt.fill_mask(["a <mask>"])[0][0]
        for backend, extra in (("tf", "tf"), ("flax", "flax"), ("onnx", "onnx")):
            try:
                encoderkit.backends.loading.backend_class(backend)
            except MissingDependencyError as e:
                assert f"encoderkit[{{extra}}]" in str(e), e
            else:
                raise AssertionError(backend)
        print("ok")
    """)
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{site}"}
    p = subprocess.run([sys.executable, "-S", "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-2000:]
