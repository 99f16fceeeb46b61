"""Masked-language modelling: a text corpus in, a ``*ForMaskedLM`` checkpoint out (the kind
``fill-mask`` and ``convert`` take), held-out perplexity before and after.

The corpus is a ``.txt`` file (every non-empty line a text) or a ``.jsonl`` file (``--text-column``).
Every text is tokenized with its special tokens, the token streams are concatenated and cut into
blocks of exactly ``max_length`` tokens (the remainder is dropped; a corpus shorter than one block
is one shorter block). Masking is dynamic: transformers' ``DataCollatorForLanguageModeling`` draws
new masks for every batch of every epoch -- ``mlm_probability`` of the tokens, of those 80 % become
the mask token, 10 % a random token, 10 % stay -- from its own generator, seeded by ``--seed`` (so a
run is reproducible and two epochs mask the same block differently). ``whole_word_mask`` masks
every piece of a chosen word (words from the character offsets; transformers then replaces every
chosen piece by the mask token).

Perplexity is exp(mean cross-entropy over masked tokens) on the held-out blocks, masked once with
a fixed generator, so the before / per-epoch / after figures are over the same masked tokens.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.architectures import DEFAULT_ARCH
from ..core.errors import InputError
from .data import _rows, read_data_file

EVAL_MASK_SEED = 1234  # the held-out blocks' one masking, whatever --seed is
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
# The domain corpus the project ships: hand-written notes on bread baking and home brewing (see
# encoderkit/data/README.md); every seventh line is held out.
BAKING_TRAIN = DATA_DIR / "baking_train.txt"
BAKING_TEST = DATA_DIR / "baking_test.txt"


@dataclass(frozen=True)
class Corpus:
    texts: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    def payload(self) -> dict[str, Any]:
        return {"texts": list(self.texts), "source": self.source}


def read_corpus(path: str | Path, *, text_column: str = "text") -> Corpus:
    """Every non-empty line of a ``.txt`` file, or ``text_column`` of every ``.jsonl`` row.

    Raises:
        InputError: no such file, not UTF-8, a row without the column or with an empty / non-string
            text (naming the row), an empty corpus.
    """
    path = Path(path)
    texts: list[str] = []
    if path.suffix == ".txt":
        raw = read_data_file(path, "a .txt or .jsonl corpus")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise InputError(f"{path}: line {line}: not UTF-8 (byte 0x{raw[e.start]:02x}); save the file as UTF-8") from None
        texts = [ln.strip() for ln in text.splitlines() if ln.strip()]
    elif path.suffix == ".jsonl":
        for n, obj in _rows(path):
            if text_column not in obj:
                raise InputError(f"{path}: row {n}: no column {text_column!r} (it has: {', '.join(map(str, obj))})")
            t = obj[text_column]
            if not isinstance(t, str) or not t.strip():
                raise InputError(f"{path}: row {n}: column {text_column!r} must be a non-empty string, got {t!r}")
            texts.append(t.strip())
    else:
        raise InputError(f"{path}: unknown corpus format {path.suffix!r}; use .txt (a text per line) or .jsonl")
    if not texts:
        raise InputError(f"{path}: the corpus is empty (no non-blank {'line' if path.suffix == '.txt' else 'row'})")
    return Corpus(tuple(texts), str(path))


def _encode(tokenizer, texts: list[str], offsets: bool) -> list[dict[str, list]]:
    enc = tokenizer(list(texts), add_special_tokens=True, return_special_tokens_mask=True,
                    return_offsets_mapping=offsets, return_token_type_ids=False, return_attention_mask=False)
    keys = ["input_ids", "special_tokens_mask"] + (["offset_mapping"] if offsets else [])
    return [{k: enc[k][i] for k in keys} for i in range(len(texts))]


def _cut(texts: list[dict[str, list]], block: int, order=None, shift: int = 0) -> list[dict[str, Any]]:
    """Concatenate the tokenized texts (in ``order``), rotate the stream by ``shift`` tokens and cut it
    into ``block``-token blocks (the remainder dropped; a stream shorter than one block is one block).
    Each block keeps ``pos``: its tokens' places in the corpus (the masking record reads them)."""
    order = range(len(texts)) if order is None else order
    starts, n = [], 0
    for t in texts:
        starts.append(n)
        n += len(t["input_ids"])
    keys = [k for k in texts[0] if k != "pos"]
    stream = {k: [x for i in order for x in texts[i][k]] for k in keys}
    stream["pos"] = [starts[i] + j for i in order for j in range(len(texts[i]["input_ids"]))]
    if shift:
        stream = {k: v[shift:] + v[:shift] for k, v in stream.items()}
    count = max(1, n // block)
    out = []
    for b in range(count):
        row = {k: v[b * block:(b + 1) * block] for k, v in stream.items()}
        row["attention_mask"] = [1] * len(row["input_ids"])
        out.append(row)
    return out


def blocks(tokenizer, texts: list[str], block: int, *, offsets: bool = False) -> list[dict[str, Any]]:
    """The texts tokenized (with special tokens), concatenated and cut into ``block``-token blocks."""
    return _cut(_encode(tokenizer, texts, offsets), block)


class Blocks:
    """The training blocks, cut again at the start of every epoch (``regroup``): the texts in a
    seeded random order, the stream rotated by a random number of tokens. A small corpus cut once
    lets a model learn its tokens by their place in a fixed block (measured: the fill-mask accuracy
    of a tiny model on the training sentences themselves stayed at the unigram baseline, while its
    loss on the fixed blocks fell); cut anew, only the context predicts a token."""

    def __init__(self, tokenizer, texts: list[str], block: int, *, offsets: bool, seed: int):
        self.texts, self.block, self.seed = _encode(tokenizer, texts, offsets), block, seed
        self.rows = _cut(self.texts, block)

    def regroup(self, epoch: int) -> None:
        import random

        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.texts)))
        rng.shuffle(order)
        total = sum(len(t["input_ids"]) for t in self.texts)
        self.rows = _cut(self.texts, self.block, order, rng.randrange(min(self.block, total)))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class RecordingCollator:
    """``DataCollatorForLanguageModeling`` that also records, per epoch, which tokens of the corpus
    it masked and how (mask token / random token / kept): the proof that masking is dynamic and
    seeded. Its epochs are started by the trainer's callback (``start_epoch``)."""

    def __init__(self, inner, mask_id: int):
        self.inner, self.mask_id = inner, mask_id
        self.epochs: list[dict[str, Any]] = []
        self._masked: set[int] = set()
        self._previous: set[int] | None = None

    def start_epoch(self) -> None:
        self.close_epoch()
        self._previous, self._masked = (self._masked if self.epochs else None), set()
        self.epochs.append({"epoch": len(self.epochs) + 1, "tokens": 0, "masked": 0, "mask_token": 0, "random": 0,
                            "kept": 0})

    def close_epoch(self) -> None:
        if not self.epochs or "digest" in self.epochs[-1]:
            return
        cur = self.epochs[-1]
        cur["digest"] = hashlib.sha256(repr(sorted(self._masked)).encode()).hexdigest()
        if self._previous is not None and self._masked:
            # dynamic masking: about mlm_probability of them (static masking would give 1.0)
            cur["masked_again"] = len(self._masked & self._previous) / len(self._masked)

    def public(self) -> list[dict[str, Any]]:
        self.close_epoch()
        return [dict(e) for e in self.epochs]

    def __call__(self, rows):
        import torch

        pos = [r.get("pos") for r in rows]
        originals = torch.tensor([r["input_ids"] for r in rows]) if len({len(r["input_ids"]) for r in rows}) == 1 else None
        batch = self.inner([{k: v for k, v in r.items() if k != "pos"} for r in rows])
        if not self.epochs:
            self.start_epoch()
        labels, inputs = batch["labels"], batch["input_ids"]
        cur = self.epochs[-1]
        masked = labels != -100
        cur["tokens"] += int(inputs.numel())
        cur["masked"] += int(masked.sum())
        cur["mask_token"] += int((masked & (inputs == self.mask_id)).sum())
        if originals is not None:
            kept = masked & (inputs == originals)
            cur["kept"] += int(kept.sum())
            cur["random"] += int((masked & ~kept & (inputs != self.mask_id)).sum())
        for r, p in enumerate(pos):
            if p is not None:
                self._masked.update(p[int(j)] for j in masked[r].nonzero().flatten())
        return batch


def dataset(tokenizer, data: dict, cfg, max_length: int) -> Blocks:
    return Blocks(tokenizer, data["texts"], max_length, offsets=cfg.whole_word_mask, seed=cfg.seed)


def collator(tokenizer, cfg):
    import os
    import warnings

    import transformers

    with warnings.catch_warnings():  # whole-word masking: transformers says it masks every chosen piece
        warnings.simplefilter("ignore")
        inner = transformers.DataCollatorForLanguageModeling(
            tokenizer, mlm=True, mlm_probability=cfg.mlm_probability, whole_word_mask=cfg.whole_word_mask,
            seed=cfg.seed + 1000 * int(os.environ.get("RANK", "0")))
    return RecordingCollator(inner, tokenizer.mask_token_id)


def masked_eval_batches(tokenizer, data: dict, cfg, max_length: int, batch_size: int = 16) -> list[dict]:
    """The held-out blocks masked once (a fixed generator): the same masked tokens every time."""
    import warnings

    import transformers

    rows = [{k: v for k, v in r.items() if k != "pos"}
            for r in blocks(tokenizer, data["texts"], max_length, offsets=cfg.whole_word_mask)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coll = transformers.DataCollatorForLanguageModeling(
            tokenizer, mlm=True, mlm_probability=cfg.mlm_probability, whole_word_mask=cfg.whole_word_mask,
            seed=EVAL_MASK_SEED)
    return [coll(rows[b:b + batch_size]) for b in range(0, len(rows), batch_size)]


def perplexity(model, batches: list[dict]) -> tuple[float, int]:
    """(exp of the mean cross-entropy over every masked token, the number of masked tokens)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with torch.no_grad():
        for b in batches:
            labels = b["labels"].to(device)
            logits = model(**{k: v.to(device) for k, v in b.items() if k != "labels"}).logits.float()
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                     ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((labels != -100).sum())
    return (math.exp(total / count) if count else float("nan")), count


def evaluator(tokenizer, data: dict, cfg, max_length: int):
    batches = masked_eval_batches(tokenizer, data, cfg, max_length)

    def evaluate(model) -> dict[str, Any]:
        ppl, n = perplexity(model, batches)
        return {"eval_perplexity": ppl, "eval_masked_tokens": n}

    return evaluate


def report_lines(m: dict[str, Any], train: Corpus, ev: Corpus | None) -> list[str]:
    lines = [f"- corpus: `{m['data']}` ({len(train)} texts, {m.get('train_features', '?')} blocks of "
             f"{m['max_length']} tokens)",
             f"- masking: {m['mlm_probability']:.0%} of the tokens, "
             + ("whole words (every chosen piece becomes the mask token)" if m["whole_word_mask"]
                else "80 % mask token / 10 % random / 10 % unchanged") + ", new masks and new block boundaries every epoch (seeded)",
             f"- held-out texts: {len(ev) if ev is not None else 'none'}"]
    if m.get("eval_perplexity") is not None:
        lines.append(f"- held-out perplexity: {m['eval_perplexity_before']:.2f} before, {m['eval_perplexity']:.2f} "
                     f"after ({m['eval_masked_tokens']} masked tokens, the same masks both times)")
    for e in m.get("masking", []):
        again = e.get("masked_again")
        lines.append(f"  - epoch {e['epoch']}: masked {e['masked']} of {e['tokens']} tokens "
                     f"({e['mask_token']} mask token, {e['random']} random, {e['kept']} kept)"
                     + (f"; {again:.0%} of them were masked in the epoch before too" if again is not None else ""))
    return lines


# ------------------------------------------------------------------ a trained tiny masked LM (tests)

def train_tiny_mlm(out: str | Path, *, epochs: float = 300.0, seed: int = 0, arch: str = DEFAULT_ARCH,
                   force: bool = False, quiet: bool = True) -> dict[str, Any]:
    """A tiny random ``arch`` model (``init-random --size tiny``) trained from scratch on the shipped
    baking corpus: a masked LM whose predictions are peaked (random weights never are) and whose
    fill-mask top-1 beats the most-frequent-token baseline on the held-out lines, for tests that need
    a trained fill-mask model (quantized agreement, ...). About two minutes on one core.

    One torch thread while it trains: a 32-wide model gains nothing from more, and on a shared
    machine they cost (measured: 0.05 s a step on one thread, 0.9 s on two with other jobs running).

    Returns:
        The training metrics (``out`` holds the checkpoint).
    """
    import tempfile

    import torch

    from ..storage.random_init import init_random
    from . import finetune

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as td:
            base = Path(td) / "base"
            init_random(base, "tiny", seed=seed, arch=arch)
            return finetune(base, BAKING_TRAIN, out, task="mlm", method="full", eval_data=BAKING_TEST,
                            epochs=epochs, lr=3e-3, batch_size=16, seed=seed, max_length=64, dropout=0.0,
                            force=force, quiet=quiet)
    finally:
        torch.set_num_threads(threads)
