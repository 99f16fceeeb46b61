"""Target ``tflite``: the SavedModel converted by ``tf.lite.TFLiteConverter``, run by LiteRT.

Layout::

    model.tflite                   signatures serving_default (input_ids, attention_mask ->
                                   last_hidden_state) and, with fill-mask, fill_mask
                                   (+ mask_positions -> logits at the masks only)
    tokenizer.json run.py requirements.txt bundle.json
                                   run.py needs ai-edge-litert, tokenizers and numpy (no TensorFlow)

Sequence length is DYNAMIC, not bucketed: the converted graph keeps [batch, length] inputs of
unknown size (the SavedModel's signatures are [None, None]) and LiteRT's signature runner resizes
its tensors to each call's shape. A text then costs its own length, not a bucket's (buckets of
32/64/128 padded a 19-token text to 32 in the flax backend); the price is a tensor re-allocation
when the shape changes, which is small next to the encoder. Quantization: ``int8`` is TFLite's
dynamic-range int8 (int8 weights, activations quantized at run time), ``fp16`` stores fp16 weights.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.errors import ArtifactError, InputError
from .common import (PY_COMMON_REQUIREMENTS, PY_REQUIREMENTS, Converted, Plan, base_bundle, finish, probe_texts,
                     reference_outputs, template, write_tokenizer)


def convert_tflite(saved_model: Path, signatures: list[str], quantize: str) -> bytes:
    """The .tflite flatbuffer of ``signatures`` of a SavedModel, builtin ops only.

    Raises:
        ArtifactError: the SavedModel needs ops LiteRT lacks (SavedModels written before
            mask_bias avoided new-axis slicing): re-convert it.
    """
    from ..backends.tf.tf_import import tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=signatures)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex: LiteRT alone must run it
    if quantize in ("int8", "fp16"):
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    try:
        return conv.convert()
    except Exception as e:  # ConverterError carries MLIR pages; keep the first useful line
        first = next((ln for ln in str(e).splitlines() if "error" in ln.lower()), str(e).splitlines()[0])
        raise ArtifactError(f"{saved_model}: TFLite conversion failed ({first[:300]}); re-run "
                            "encoderkit convert --to tf with this version of encoderkit") from None


def package_tflite(source: Converted, out: Path, p: Plan, say) -> dict[str, Any]:
    """Write the tflite bundle into ``out``; return bundle.json's content."""
    from ..backends.tf.layout import SAVED_MODEL_DIR

    if p.options.pooling or p.options.ort_format:
        raise InputError("--pooling and --ort apply to ONNX targets; the tflite runner pools in numpy")
    tf_dir = source.need("tf")
    sigs = ["serving_default"] + (["fill_mask"] if "fill-mask" in p.tasks else [])
    say(f"TFLiteConverter ({p.options.quantize if p.options.quantize != 'none' else 'fp32'}) ...")
    (out / "model.tflite").write_bytes(convert_tflite(tf_dir / SAVED_MODEL_DIR, sigs, p.options.quantize))
    tok = write_tokenizer(tf_dir, out)
    (out / "run.py").write_text(template("run.py"), encoding="utf-8")
    (out / "requirements.txt").write_text("\n".join([PY_REQUIREMENTS["litert"], *PY_COMMON_REQUIREMENTS]) + "\n")
    bundle = base_bundle(source, p, engine="litert", runner="run.py",
                         graphs={"encoder": "model.tflite", "head": "model.tflite" if "fill-mask" in p.tasks else None},
                         pooling_in_graph=False, tokenizer=tok)
    bundle["tflite"] = {"signatures": sigs, "sequence_length": "dynamic",
                        "quantization": {"none": "fp32", "int8": "dynamic-range int8 weights",
                                         "fp16": "fp16 weights"}[p.options.quantize]}
    say("torch reference outputs on the probe texts ...")
    embed, fill = probe_texts(source.spec, p.tasks, p.max_length)
    probes = reference_outputs(source, p, embed, fill, "mean", False)
    return finish(out, bundle, probes, p.options.quantize, say, fp32_backend="tf")
