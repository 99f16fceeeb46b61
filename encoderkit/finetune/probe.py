"""Linear probes: frozen pooled embeddings (any backend, reusing ``embed``) -> logistic regression.

A probe directory holds ``probe_head.safetensors`` (``weight`` [labels, hidden], ``bias``
[labels]) and ``probe.json`` (labels, pooling, layer, normalize, the base model); no pickle. Its
scores are softmax(features @ weight.T + bias), i.e. scikit-learn's ``predict_proba`` (a binary
probe is stored as the equivalent two-row softmax), so it classifies on every backend the base
model can be loaded on.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ArtifactError, InputError

PROBE_FILE = "probe.json"
HEAD_FILE = "probe_head.safetensors"


@dataclass(frozen=True)
class ProbeConfig:
    base: str  # the base model as given (checkpoint dir, packaged name, or convert output)
    labels: tuple[str, ...]
    pooling: str = "mean"
    layer: int = -1
    normalize: bool = False


def fit_probe(features: np.ndarray, y: Sequence[int], num_labels: int, *, seed: int = 0,
              c: float = 1.0, max_iter: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Fit scikit-learn's LogisticRegression; returns (weight [labels, hidden], bias [labels]) in the
    softmax form (a binary model's one row z becomes the rows -z/2, z/2: same probabilities)."""
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    clf.fit(np.asarray(features, dtype=np.float64), np.asarray(y))
    w, b = clf.coef_.astype(np.float32), clf.intercept_.astype(np.float32)
    if w.shape[0] == 1:  # sigmoid(z) == softmax([-z/2, z/2])[1]
        w, b = np.concatenate([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])
    if list(clf.classes_) != list(range(num_labels)):
        raise InputError("the training set does not hold every label index 0..n-1")
    return w, b


def save_probe(directory: Path, config: ProbeConfig, weight: np.ndarray, bias: np.ndarray) -> None:
    from safetensors.numpy import save_file

    save_file({"weight": np.ascontiguousarray(weight, np.float32), "bias": np.ascontiguousarray(bias, np.float32)},
              str(directory / HEAD_FILE), metadata={"format": "np"})
    d = {"kind": "probe", "base": config.base, "labels": list(config.labels), "pooling": config.pooling,
         "layer": config.layer, "normalize": config.normalize}
    (directory / PROBE_FILE).write_text(json.dumps(d, indent=2) + "\n")


def is_probe_dir(model: str | Path) -> bool:
    return (Path(model) / PROBE_FILE).is_file()


class ProbeClassifier:
    """A probe over a runtime: ``classify`` answers as ``Runtime.classify`` does.

    Args:
        directory: the probe directory.
        backend: backend of the base model (``encoderkit.load``'s names).
        base: override the base model recorded in probe.json (e.g. its `convert` output, to run the
            probe on onnx/tf/flax).
    Raises:
        ArtifactError: unreadable probe files; anything ``encoderkit.load`` raises for the base.
    """

    def __init__(self, directory: str | Path, backend: str | None = None, *, base: str | Path | None = None,
                 **options: Any):
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        from ..backends.loading import load
        from ..storage.manifest import read_json_bounded

        directory = Path(directory)
        try:
            d = read_json_bounded(directory / PROBE_FILE, what=PROBE_FILE, max_bytes=1 << 20)
            self.config = ProbeConfig(base=str(d["base"]), labels=tuple(map(str, d["labels"])),
                                      pooling=str(d["pooling"]), layer=int(d["layer"]),
                                      normalize=bool(d["normalize"]))
            head = load_file(str(directory / HEAD_FILE))
            self.weight, self.bias = head["weight"], head["bias"]
        except (OSError, KeyError, TypeError, ValueError, SafetensorError, ArtifactError) as e:
            raise ArtifactError(f"{directory}: not a readable probe ({type(e).__name__}: {e})") from None
        if self.weight.shape != (len(self.config.labels), self.weight.shape[1]) or \
                self.bias.shape != (len(self.config.labels),):
            raise ArtifactError(f"{directory / HEAD_FILE}: shapes {self.weight.shape}/{self.bias.shape} do not "
                                f"match {len(self.config.labels)} labels")
        self.runtime = load(base if base is not None else self.config.base, backend, **options)
        if self.weight.shape[1] != self.runtime.spec.hidden_size:
            raise ArtifactError(f"{directory}: the probe takes {self.weight.shape[1]} features, the base model "
                                f"gives {self.runtime.spec.hidden_size}")
        self.labels = self.config.labels

    @property
    def name(self) -> str:
        return self.runtime.name

    def logits(self, texts: Sequence[str], *, truncate: bool = False) -> np.ndarray:
        c = self.config
        x = self.runtime.embed(texts, pooling=c.pooling, layer=c.layer, normalize=c.normalize, truncate=truncate)
        return x @ self.weight.T + self.bias

    def classify(self, texts: Sequence[str], pairs: Sequence[str] | None = None, top_k: int | None = 1,
                 *, truncate: bool = False) -> list[list[dict[str, Any]]]:
        """As ``Runtime.classify`` (single texts only: a probe is trained on pooled single-text embeddings).

        Raises:
            InputError: pairs given, bad top_k, bad texts.
        """
        from ..tasks.classify import ranked, scores_of

        if pairs is not None:
            raise InputError("a probe classifies single texts (it was trained on pooled embeddings of one text)")
        return ranked(scores_of(self.logits(texts, truncate=truncate)), self.labels, top_k)
