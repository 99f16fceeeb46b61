"""The tokenizers of random checkpoints (`init-random`): a RoBERTa byte-level BPE or a BERT
WordPiece trained on the shipped corpus, grown to exactly the model's vocabulary size, so every id
decodes to a token. Storage layer.
"""
from __future__ import annotations

import json
import random
from collections.abc import Iterable
from typing import Any

from tokenizers import Tokenizer

from ..core.texts import corpus_lines


def _pad_vocab(vocab: dict[str, int], size: int, rng: random.Random, make) -> list[tuple[str, str]]:
    """Grow ``vocab`` to exactly ``size`` entries with ``make(rng, tokens) -> (piece, parts)``."""
    tokens = list(vocab)
    extra = []
    while len(vocab) < size:
        piece, parts = make(rng, tokens)
        if piece in vocab:
            continue
        vocab[piece] = len(vocab)
        tokens.append(piece)
        extra.append(parts)
    return extra


def build_bpe_tokenizer(vocab_size: int, seed: int, max_length: int,
                        lines: Iterable[str] | None = None) -> dict[str, Any]:
    """A byte-level BPE like roberta's, trained on the embedded corpus (or ``lines``), padded to
    ``vocab_size`` where the corpus has fewer merges.

    Ids: <s>=0 <pad>=1 </s>=2 <unk>=3 ... <mask>=vocab_size-1 (as in roberta-large).
    Returns the tokenizer.json content as a dict.
    """
    from tokenizers import decoders, models, pre_tokenizers, processors, trainers

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 1, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_lines() if lines is None else lines, trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = dict(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    rng = random.Random(seed)

    short = [t for t in list(vocab)[4:] if len(t) <= 2]

    def make(rng, tokens):  # a merge of an existing token and a short one, at most 8 characters
        a, b = rng.choice(tokens[4:]), rng.choice(short)
        if len(a) + len(b) > 8:
            return a, None  # already in the vocabulary: rejected, drawn again
        return a + b, (a, b)

    merges += _pad_vocab(vocab, vocab_size - 1, rng, make)
    vocab["<mask>"] = vocab_size - 1
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True,
                                                      add_prefix_space=False)
    from tokenizers import AddedToken

    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials]
                           + [AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    return json.loads(tok.to_str())


def build_wordpiece_tokenizer(vocab_size: int, seed: int, max_length: int) -> dict[str, Any]:
    """An uncased WordPiece like BERT's, trained on the embedded corpus, padded to ``vocab_size``.

    Ids: [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4.
    """
    from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer)
    vocab = dict(sorted(json.loads(tok.to_str())["model"]["vocab"].items(), key=lambda kv: kv[1]))
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"

    def make(rng, tokens):
        piece = "".join(rng.choice(letters) for _ in range(rng.randint(2, 6)))
        return ("##" + piece if rng.random() < 0.5 else piece), None

    _pad_vocab(vocab, vocab_size, rng, make)
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tok.add_special_tokens([AddedToken(t, special=True) for t in specials])
    return json.loads(tok.to_str())


# kind -> (builder, the special-token ids it assigns; -1 = the last id of the vocabulary)
RANDOM_TOKENIZERS = {
    "bpe": (build_bpe_tokenizer, {"cls": 0, "pad": 1, "sep": 2, "unk": 3, "mask": -1}),
    "wordpiece": (build_wordpiece_tokenizer, {"pad": 0, "unk": 1, "cls": 2, "sep": 3, "mask": 4}),
}


def tokenizer_config(arch, max_length: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """tokenizer_config.json and special_tokens_map.json for a random checkpoint of ``arch``
    (an ``architectures.Architecture``)."""
    sp = arch.special
    special: dict[str, Any] = {"unk_token": sp.unk, "sep_token": sp.sep, "pad_token": sp.pad, "cls_token": sp.cls}
    if arch.random_tokenizer == "bpe":  # byte-level BPE: <mask> absorbs the space before it
        special |= {"bos_token": sp.cls, "eos_token": sp.sep,
                    "mask_token": {"content": sp.mask, "lstrip": True, "rstrip": False,
                                   "normalized": False, "single_word": False}}
    else:
        special["mask_token"] = sp.mask
    config = {"tokenizer_class": arch.tokenizer_class, "model_max_length": max_length,
              "clean_up_tokenization_spaces": False, **special}
    if arch.lowercase:
        config["do_lower_case"] = True
    return config, special
