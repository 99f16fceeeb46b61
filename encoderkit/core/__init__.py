"""The core layer: errors, the optional-extras table, progress and logs, typed options, the
architecture and head records, ModelSpec, tokenization, batching, shipped texts and the typed
contracts. Imports nothing of encoderkit outside itself, and no framework (torch, TF, JAX, ORT)
at import time.
"""
from __future__ import annotations

__version__ = "0.2.0"
