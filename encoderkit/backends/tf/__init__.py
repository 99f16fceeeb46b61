"""The TensorFlow backend: our own encoder as a plain ``tf.Module`` (transformers 5 has no TF
classes), saved as a SavedModel with serving signatures; loaded only after the origin check proves
the SavedModel (a program) is one this package exported.

Files: ``tf_import.py`` (quiet import with oneDNN), ``model.py`` (the encoder, heads and
signatures), ``check.py`` (the origin check), ``export.py``, ``runtime.py``.
"""
from __future__ import annotations

from ...core.contracts import FP32_ATOL, BackendInfo, FormatInfo, Tolerance

FORMATS = (
    FormatInfo("tf", "encoderkit.backends.tf.export:TFConverter", "tf", "TensorFlow SavedModel with signatures",
               origin_check="encoderkit.backends.tf.check:check_saved_model"),
)
BACKENDS = (
    BackendInfo("tf", "encoderkit.backends.tf.runtime:TFRuntime", "tf", "tf", Tolerance(atol=FP32_ATOL),
                "TensorFlow SavedModel signatures"),
)
