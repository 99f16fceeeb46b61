"""The peers: what users pick instead of encoderkit, each built by one function that returns its
``System``s (or records in ``skipped`` why it cannot run here). ``PEERS`` lists them with the task
they run; a new peer is one function and one row.

- transformers' fill-mask pipeline at batch 1 and 8;
- sentence-transformers ``encode`` (mean pooling);
- plain AutoModel + mean pooling at a fixed batch size;
- CTranslate2's ``Encoder`` used directly on the directory's CTranslate2 models (fixed batches in
  input order, mean pooling);
- optimum's ONNX recipe (O2 and dynamic int8), run by ``optimum_peer.py`` (beside this module, in
  the wheel) in optimum's own venv as a subprocess that answers one request per timed call.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.progress import say
from .systems import System, _dir_mb, _rss_mb

PEER_BATCH = 32  # AutoModel / CTranslate2-direct / optimum + mean pooling batch size
# optimum's recipe runs in its own venv (`make optimum-venv`); the script ships in the wheel.
OPTIMUM_SCRIPT = Path(__file__).resolve().parent / "optimum_peer.py"
OPTIMUM_ENV = "ENCODERKIT_OPTIMUM_PYTHON"
OPTIMUM_SYSTEMS = ("optimum-o2", "optimum-int8")
CT2_DIRECT = {"fp32": "ctranslate2-direct", "int8": "ctranslate2-direct-int8"}  # variant -> peer name


@dataclass
class PeerContext:
    """What a peer function gets: the converted directory, its checkpoint, the HF tokenizer, the
    reference spec, where to keep temporary files, and the run's shared state."""

    model: Path
    ckpt_dir: Path
    tokenizer: Any
    spec: Any
    workdir: Path
    skipped: dict[str, str]
    closers: list[Callable[[], None]]
    optimum_python: str | None = None
    ct2_loaded: dict[str, Any] | None = None


def pipeline_peers(c: PeerContext) -> list[System]:
    """transformers' fill-mask pipeline, one text per call and batches of 8."""
    from transformers import AutoModelForMaskedLM, pipeline

    if not c.spec.has_mlm_head:
        return []
    rss, t = _rss_mb(), time.perf_counter()
    pipe = pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(c.ckpt_dir), tokenizer=c.tokenizer,
                    device="cpu")
    load_s = time.perf_counter() - t
    kw = {"tokenizer_kwargs": {"truncation": True}}
    return [System("pipeline-bs1", "peer", {"fill-mask": lambda xs: [pipe(x, **kw) for x in xs]},
                   lambda x: pipe(x, **kw), load_s, _rss_mb() - rss, _dir_mb(c.ckpt_dir)),
            System("pipeline-bs8", "peer", {"fill-mask": lambda xs: pipe(xs, batch_size=8, **kw)},
                   None, load_s, 0.0, _dir_mb(c.ckpt_dir))]


def sentence_transformers_peer(c: PeerContext) -> list[System]:
    """sentence-transformers ``encode`` with mean pooling over the checkpoint."""
    from sentence_transformers import SentenceTransformer, models

    rss, t = _rss_mb(), time.perf_counter()
    word = models.Transformer(str(c.ckpt_dir), max_seq_length=c.spec.max_tokens_per_text)
    dim = getattr(word, "get_embedding_dimension", None) or word.get_word_embedding_dimension  # renamed in ST 5
    st = SentenceTransformer(modules=[word, models.Pooling(dim(), "mean")], device="cpu")
    load_s = time.perf_counter() - t
    return [System("sentence-transformers", "peer", {"embed": lambda xs: st.encode(xs, batch_size=32)}, None, load_s,
                   _rss_mb() - rss, _dir_mb(c.ckpt_dir))]


def automodel_peer(c: PeerContext) -> list[System]:
    """transformers' AutoModel + mean pooling at a fixed batch size, as a plain script does it."""
    import torch
    from transformers import AutoModel

    rss, t = _rss_mb(), time.perf_counter()
    auto = AutoModel.from_pretrained(c.ckpt_dir).eval()
    load_s = time.perf_counter() - t
    tok = c.tokenizer

    @torch.inference_mode()
    def automodel(xs):
        out = []
        for i in range(0, len(xs), PEER_BATCH):
            enc = tok(xs[i:i + PEER_BATCH], padding=True, truncation=True, return_tensors="pt")
            h = auto(**enc).last_hidden_state
            m = enc["attention_mask"][:, :, None].float()
            out.append(((h * m).sum(1) / m.sum(1)).numpy())
        return np.concatenate(out)

    return [System(f"automodel-bs{PEER_BATCH}", "peer", {"embed": automodel}, None, load_s,
                   _rss_mb() - rss, _dir_mb(c.ckpt_dir))]


def ct2_direct_peers(c: PeerContext) -> list[System]:
    """CTranslate2 used directly: see ``ct2_direct_systems``."""
    return ct2_direct_systems(c.model, c.tokenizer, c.skipped, loaded=c.ct2_loaded)


def optimum_peers(c: PeerContext) -> list[System]:
    """optimum's recipe: see ``optimum_systems``."""
    return optimum_systems(c.ckpt_dir, c.optimum_python, c.skipped, c.workdir, c.closers)


def ct2_direct_systems(model: Path, tok, skipped: dict[str, str], loaded: dict[str, Any] | None = None) -> list[System]:
    """CTranslate2 used directly, as a user who picks it instead of encoderkit writes it: an
    ``Encoder`` over the directory's CTranslate2 model, the HF tokenizer, fixed batches of
    ``PEER_BATCH`` texts in input order (no length sorting, no token budget) and mean pooling.

    ``loaded``: variant -> a ``ctranslate2.Encoder`` our ctranslate2 backend already holds; the
    peer then calls that same object (the comparison is the calling pattern, and roberta-large
    does not need a second copy in memory)."""
    import importlib.util

    from ..backends.ctranslate2.layout import COMPUTE_TYPES, MODEL_DIRS

    if importlib.util.find_spec("ctranslate2") is None:
        skipped |= {name: "ctranslate2 is not installed (pip install 'encoderkit[ctranslate2]')"
                    for name in CT2_DIRECT.values()}
        return []
    import ctranslate2

    systems = []
    for variant, name in CT2_DIRECT.items():
        path = model / "ctranslate2" / MODEL_DIRS[variant]
        if not (path / "model.bin").is_file():
            flag = " --quantize int8" if variant == "int8" else ""
            skipped[name] = f"the model directory has no {path.relative_to(model)}/ (convert --to ctranslate2{flag})"
            continue
        if not (loaded or {}).get(variant):  # opened here: through the gate every opener takes
            from ..backends.loading import open_converted

            open_converted(model, "ctranslate2")
        rss, t = _rss_mb(), time.perf_counter()
        encoder = (loaded or {}).get(variant) or ctranslate2.Encoder(str(path), device="cpu",
                                                                     compute_type=COMPUTE_TYPES[variant])
        load_s = time.perf_counter() - t

        def run(xs, encoder=encoder):
            out = []
            for i in range(0, len(xs), PEER_BATCH):
                ids = tok(xs[i:i + PEER_BATCH], truncation=True)["input_ids"]
                hidden = np.asarray(encoder.forward_batch(ids).last_hidden_state)
                lengths = np.array([len(x) for x in ids])
                m = (np.arange(hidden.shape[1])[None, :] < lengths[:, None])[:, :, None]
                out.append((hidden * m).sum(1) / lengths[:, None])
            return np.concatenate(out).astype(np.float32)

        systems.append(System(name, "peer", {"embed": run}, None, load_s, _rss_mb() - rss, _dir_mb(path)))
        say(f"loaded {name} in {load_s:.1f}s")
    return systems


class OptimumPeer:
    """``optimum_peer.py --serve`` in optimum's own venv: one request per timed call.

    Raises:
        RuntimeError: the process died or answered an error (the message says which).
    """

    def __init__(self, python: str, ckpt_dir: Path, workdir: Path, log: Path):
        self.workdir = workdir
        self.log = log
        self._log = self.log.open("w")
        self.proc = subprocess.Popen([python, str(OPTIMUM_SCRIPT), str(ckpt_dir), "--serve", "--workdir",
                                      str(workdir / "optimum")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, text=True)
        self.ready = self._reply()
        self._texts: dict[str, str] = {}

    def _reply(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self._log.flush()
            tail = [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()][-1:]
            raise RuntimeError(f"the optimum peer exited (code {code}){': ' + tail[0][:200] if tail else ''}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"the optimum peer failed: {reply['error']}")
        return reply

    def embed(self, system: str, xs: list[str]) -> np.ndarray:
        key = hashlib.sha256("\0".join(xs).encode()).hexdigest()[:16]
        if key not in self._texts:
            path = self.workdir / f"texts-{key}.json"
            path.write_text(json.dumps(list(xs)))
            self._texts[key] = str(path)
        save = self.workdir / "embeddings.npy"
        self.proc.stdin.write(json.dumps({"system": system, "texts": self._texts[key], "save": str(save)}) + "\n")
        self.proc.stdin.flush()
        self._reply()
        return np.load(save)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def optimum_systems(ckpt_dir: Path, python: str | None, skipped: dict[str, str], workdir: Path,
                    closers: list[Callable[[], None]]) -> list[System]:
    """optimum's recipe (O2 fp32, dynamic int8) as peers, when optimum's venv python is given."""
    python = python or os.environ.get(OPTIMUM_ENV)
    reason = None
    if not python:
        reason = f"no optimum venv given (make optimum-venv; --optimum-python .venv-optimum/bin/python or {OPTIMUM_ENV})"
    elif not Path(python).is_file():
        reason = f"optimum python {python} does not exist (make optimum-venv)"
    elif not OPTIMUM_SCRIPT.is_file():  # pragma: no cover - it ships in the wheel
        reason = f"{OPTIMUM_SCRIPT} is missing from this installation"
    if reason:
        skipped |= dict.fromkeys(OPTIMUM_SYSTEMS, reason)
        return []
    rss, t = _rss_mb(), time.perf_counter()
    try:
        peer = OptimumPeer(python, ckpt_dir, workdir, workdir.parent / "optimum-peer.log")
    except (RuntimeError, OSError, ValueError) as e:
        skipped |= dict.fromkeys(OPTIMUM_SYSTEMS, str(e))
        return []
    closers.append(peer.close)
    say(f"started optimum's recipe in {time.perf_counter() - t:.1f}s ({peer.log})")
    facts = peer.ready.get("systems", {})
    return [System(name, "peer", {"embed": lambda xs, name=name: peer.embed(name, xs)}, None,
                   float(facts.get(name, {}).get("load_s", 0.0)), _rss_mb() - rss,
                   float(facts.get(name, {}).get("size_mb", 0.0)))
            for name in OPTIMUM_SYSTEMS if name in facts]


# (task, peer function): the order is the order they are loaded and listed
PEERS: tuple[tuple[str, Callable[[PeerContext], list[System]]], ...] = (
    ("fill-mask", pipeline_peers),
    ("embed", sentence_transformers_peer),
    ("embed", automodel_peer),
    ("embed", ct2_direct_peers),
    ("embed", optimum_peers),
)


def load_peers(c: PeerContext, tasks: list[str]) -> list[System]:
    systems: list[System] = []
    for task, fn in PEERS:
        if task in tasks:
            systems += fn(c)
    return systems
