"""Target ``tf-serving``: the SavedModel in TensorFlow Serving's layout.

Layout::

    <name>/1/                      the SavedModel (saved_model.pb, variables/), version 1; its
                                   signatures: serving_default (input_ids, attention_mask ->
                                   last_hidden_state), fill_mask (+ mask_positions -> logits),
                                   hidden_states, attentions
    models.config                  TF Serving's model_config_list naming <name> at /models/<name>
    bundle.json tokenizer.json run.py requirements.txt README.md
                                   `python run.py --self-test` runs the SavedModel with TensorFlow

Serve: ``docker run --rm -p 8501:8501 -v $PWD/BUNDLE:/models tensorflow/serving
--model_config_file=/models/models.config``

--quantize and --pooling do not apply (TF Serving runs the SavedModel as exported; pooling is
the client's, or the runner's).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..core.errors import InputError
from .common import Converted, Plan, base_bundle, finish, probe_texts, reference_outputs, template, write_tokenizer
from .common import PY_COMMON_REQUIREMENTS, PY_REQUIREMENTS


def models_config(name: str) -> str:
    return ("model_config_list {\n  config {\n"
            f'    name: "{name}"\n    base_path: "/models/{name}"\n    model_platform: "tensorflow"\n'
            "  }\n}\n")


def package_tf_serving(source: Converted, out: Path, p: Plan, say) -> dict[str, Any]:
    """Write the TF Serving layout into ``out``; return bundle.json's content."""
    from ..backends.tf.layout import SAVED_MODEL_DIR

    if p.options.quantize != "none" or p.options.pooling or p.options.ort_format:
        raise InputError("--quantize, --pooling and --ort do not apply to tf-serving (it serves the SavedModel "
                         "as exported); use --target onnx or triton for those")
    tf_dir = source.need("tf")
    name = p.name
    say("copying the SavedModel ...")
    shutil.copytree(tf_dir / SAVED_MODEL_DIR, out / name / "1")
    (out / "models.config").write_text(models_config(name))
    tok = write_tokenizer(tf_dir, out)
    (out / "run.py").write_text(template("run.py"), encoding="utf-8")
    (out / "requirements.txt").write_text("\n".join([PY_REQUIREMENTS["tensorflow"], *PY_COMMON_REQUIREMENTS]) + "\n")
    (out / "README.md").write_text(
        f"# TensorFlow Serving: {name}\n\nServe (REST on 8501, gRPC on 8500):\n\n"
        "```\ndocker run --rm -p 8501:8501 -v \"$PWD\":/models tensorflow/serving "
        "--model_config_file=/models/models.config\n```\n\n"
        f"Signatures of `{name}/1`: `saved_model_cli show --all --dir {name}/1`. Tokenize with `tokenizer.json`.\n")
    bundle = base_bundle(source, p, engine="tensorflow", runner="run.py",
                         graphs={"encoder": f"{name}/1", "head": f"{name}/1" if "fill-mask" in p.tasks else None},
                         pooling_in_graph=False, tokenizer=tok)
    bundle["tf_serving"] = {"model": name, "version": 1, "config": "models.config",
                            "signatures": ["serving_default", "hidden_states", "attentions"]
                            + (["fill_mask"] if source.spec.has_mlm_head else [])}
    say("torch reference outputs on the probe texts ...")
    embed, fill = probe_texts(source.spec, p.tasks, p.max_length)
    probes = reference_outputs(source, p, embed, fill, "mean", False)
    return finish(out, bundle, probes, "none", say, fp32_backend="tf")
