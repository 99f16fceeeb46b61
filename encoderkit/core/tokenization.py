"""Tokenization once, above every backend: the `tokenizers` library on tokenizer.json, with the
input policy every backend shares (empty, over-long, non-string and undecodable texts refused).
Core layer. (The tokenizers of random checkpoints are built in ``storage/random_tokenizers.py``.)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer

from .errors import CheckpointError, InputError

TOKENIZER_MAX_BYTES = 64 << 20  # a 250k-vocabulary model's tokenizer.json is ~20 MB
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "vocab.txt")


class TextTokenizer:
    """A thin, policy-enforcing wrapper over ``tokenizers.Tokenizer``.

    Args:
        tokenizer: the fast tokenizer (its own truncation/padding settings are cleared).
        max_length: longest encoded sequence, special tokens included.
        mask_token: the mask token's text, e.g. ``<mask>`` or ``[MASK]``.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int, mask_token: str):
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        self._trunc = Tokenizer.from_str(tokenizer.to_str())
        self._trunc.enable_truncation(max_length)
        self.max_length = max_length
        self.mask_token = mask_token
        mask_id = tokenizer.token_to_id(mask_token)
        if mask_id is None:
            raise CheckpointError(f"tokenizer has no mask token {mask_token!r}")
        self.mask_token_id = mask_id
        self._special: set[int] | None = None
        self._windows = None

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, texts: Sequence[object], *, truncate: bool = False) -> list[list[int]]:
        """Encode texts with special tokens, enforcing the input policy.

        Raises:
            TypeError: an element is not a str (names its index).
            InputError: an empty text, or a text longer than the model and ``truncate`` is False.
        """
        return [e.ids for e in self.encode_detailed(texts, truncate=truncate)]

    def encode_detailed(self, texts: Sequence[object], *, truncate: bool = False) -> list:
        """As ``encode``, but each text's tokenizers ``Encoding`` (ids, tokens, character offsets,
        special-token mask): what tasks that point back into the text need (ner)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not a single str")
        texts = list(texts)
        if not texts:
            raise InputError("no texts given")
        for i, t in enumerate(texts):
            _check_text(t, f"texts[{i}]")
        # one text: a plain encode (encode_batch hands even one text to its thread pool)
        encs = [self._tok.encode(texts[0])] if len(texts) == 1 else list(self._tok.encode_batch(texts))
        too_long = [i for i, e in enumerate(encs) if len(e.ids) > self.max_length]
        if too_long and not truncate:
            i = too_long[0]
            raise InputError(
                f"texts[{i}] has {len(encs[i].ids)} tokens, more than the model's {self.max_length}; "
                "shorten it or pass truncate=True (--truncate)")
        for i in too_long:
            encs[i] = self._trunc.encode(texts[i])
        self._check_not_empty([e.ids for e in encs], "texts")
        return encs

    def encode_pairs(self, texts: Sequence[object], pairs: Sequence[object] | None, *,
                     truncate: bool = False, one: bool = False) -> list[tuple[list[int], list[int], list[int]]]:
        """Encode texts (or text pairs, the tokenizer's pair template) -> [(ids, type ids, segments)].

        Type ids are the token_type_ids the template assigns (BERT: 0 for A, 1 for B; RoBERTa: all
        0). Segments mark which text a token came from (0: A, 1: B) whatever the model: a special
        token belongs to the text before it (the first to A).

        Args:
            one: a single input: errors name "text" / "pair" rather than "texts[0]" / "pairs[0]".
        Raises:
            TypeError / InputError: as ``encode``; also when ``pairs`` and ``texts`` differ in length.
        """
        if one:
            _check_text(texts[0], "text")
            if pairs is not None:
                _check_text(pairs[0], "pair")
        if pairs is None:
            try:
                return [(x, [0] * len(x), [0] * len(x)) for x in self.encode(texts, truncate=truncate)]
            except InputError as e:
                raise InputError(str(e).replace("texts[0]", "text", 1) if one else str(e)) from None
        if isinstance(texts, str) or isinstance(pairs, str):
            raise TypeError("texts and pairs must be lists of strings, not a single str")
        texts, pairs = list(texts), list(pairs)
        if len(texts) != len(pairs):
            raise InputError(f"{len(texts)} texts but {len(pairs)} pair texts; give one pair text per text")
        if not texts:
            raise InputError("no texts given")
        for i, (a, b) in enumerate(zip(texts, pairs)):
            _check_text(a, f"texts[{i}]")
            _check_text(b, f"pairs[{i}]")
        encs = self._tok.encode_batch(list(zip(texts, pairs)))
        out = []
        for i, e in enumerate(encs):
            if len(e.ids) > self.max_length:
                if not truncate:
                    what = "text + pair" if one else f"pair {i}"
                    raise InputError(f"{what} has {len(e.ids)} tokens, more than the model's "
                                     f"{self.max_length}; shorten it or pass truncate=True (--truncate)")
                e = self._trunc.encode(texts[i], pairs[i])
            segments, current = [], 0
            for sid in e.sequence_ids:
                current = current if sid is None else sid
                segments.append(current)
            out.append((e.ids, e.type_ids, segments))
        self._check_not_empty([x for x, _, _ in out], "pairs")
        return out

    def encode_windows(self, text: str, pair: str, *, max_length: int, stride: int) -> list:
        """``text`` + ``pair`` (the tokenizer's pair template) cut into overlapping windows of at
        most ``max_length`` tokens, only ``pair`` cut (``stride`` tokens shared by neighbours): the
        way transformers' question-answering pipeline windows a long context. Returns the windows'
        ``Encoding``s, first to last.

        Raises:
            InputError: ``text`` alone does not fit ``max_length`` with room for the pair.
        """
        _check_text(text, "question")
        _check_text(pair, "context")
        # tokenizers panics (a BaseException with a Rust backtrace on stderr) when the stride is not
        # below the context tokens a window holds beside the question: refuse that in one line first
        added = self._tok.num_special_tokens_to_add(True)
        n_text = len(self._tok.encode(text, add_special_tokens=False).ids)
        n_pair = len(self._tok.encode(pair, add_special_tokens=False).ids)
        room = max_length - added - n_text
        if n_text + n_pair + added > max_length and 0 < room <= stride:
            raise InputError(f"doc_stride {stride} must be less than the {room} context tokens a window of "
                             f"{max_length} holds beside this question; lower it")
        key = (max_length, stride)
        if getattr(self, "_windows", None) is None or self._windows[0] != key:
            tok = Tokenizer.from_str(self._tok.to_str())
            tok.enable_truncation(max_length, stride=stride, strategy="only_second")
            self._windows = (key, tok)
        try:
            enc = self._windows[1].encode(text, pair)
        except Exception as e:  # tokenizers raises plain Exception when the question leaves no room
            raise InputError(f"the question is too long for windows of {max_length} tokens with a stride of "
                             f"{stride} ({str(e).splitlines()[0][:120]}); shorten it") from None
        return [enc, *enc.overflowing]

    def _check_not_empty(self, ids: list[list[int]], what: str) -> None:
        special = self.special_ids - {self.mask_token_id}
        for i, x in enumerate(ids):
            if all(t in special for t in x):  # e.g. only zero-width or control characters
                raise InputError(f"{what}[{i}] has no tokens once normalized (only spaces, control or "
                                 "zero-width characters?)")

    def cut_to_fit(self, text: str) -> str:
        """``text`` itself if it fits the model, else its longest prefix (ending at a token
        boundary) that does, special tokens included."""
        if len(self._tok.encode(text).ids) <= self.max_length:
            return text
        enc = self._trunc.encode(text)
        ends = [end for (_, end), special in zip(enc.offsets, enc.special_tokens_mask) if not special]
        cut = text[: ends[-1]] if ends else ""
        while cut and len(self._tok.encode(cut).ids) > self.max_length:  # a prefix can retokenize longer
            cut = cut[: max(0, len(cut) - 16)]
        return cut

    def tokens_to_string(self, tokens: Sequence[str]) -> str:
        """Tokens joined back into text by the tokenizer's decoder (transformers'
        ``convert_tokens_to_string`` on a fast tokenizer)."""
        dec = self._tok.decoder
        return dec.decode(list(tokens)) if dec is not None else " ".join(tokens)

    @property
    def continuing_subword_prefix(self) -> str | None:
        """WordPiece's "##" (a word-aware model); None for byte-level BPE."""
        return getattr(self._tok.model, "continuing_subword_prefix", None)

    @property
    def unk_token_id(self) -> int | None:
        unk = getattr(self._tok.model, "unk_token", None)
        return self._tok.token_to_id(unk) if unk else None

    def id_to_token(self, token_id: int) -> str:
        return self._tok.id_to_token(int(token_id)) or ""

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(map(int, ids)), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def encode_plain(self, text: str) -> list[int]:
        """Encode without special tokens (used for fill-mask targets)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    @property
    def special_ids(self) -> set[int]:
        if self._special is None:
            self._special = {self._tok.token_to_id(t.content)
                             for t in self._tok.get_added_tokens_decoder().values() if t.special}
        return self._special


def _check_text(t: object, where: str) -> None:
    if not isinstance(t, str):
        raise TypeError(f"{where} is {type(t).__name__}, expected str")
    if not t.strip():
        raise InputError(f"{where} is empty")
    try:
        t.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, e.g. from undecodable bytes in argv
        raise InputError(f"{where} is not valid Unicode (lone surrogates: undecodable bytes?); "
                         "pass UTF-8 text") from None


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of a checkpoint file, read within a size bound: links followed (a hub cache holds
    blobs behind them), FIFOs and devices refused (they would block or never end).

    Raises:
        CheckpointError: not a regular file, larger than ``max_bytes``, or unreadable (a missing file
            included: callers that name it otherwise check first).
    """
    import os
    import stat

    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise CheckpointError(f"{path}: not a regular file")
        if st.st_size > max_bytes:
            raise CheckpointError(f"{path}: {st.st_size} bytes, more than a {Path(path).name} can be ({max_bytes})")
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror})") from None
    if len(raw) > max_bytes:  # grew while it was read
        raise CheckpointError(f"{path}: more than {max_bytes} bytes")
    return raw


def read_tokenizer_json(path: Path, max_bytes: int = TOKENIZER_MAX_BYTES) -> str:
    """The text of a tokenizer.json, read within a size bound before the `tokenizers` library sees
    it (a 1 GiB file would otherwise be parsed whole). Links are followed (a hub cache holds
    blobs behind them); FIFOs and devices are not read.

    Raises:
        CheckpointError: not a regular file, larger than ``max_bytes``, or not UTF-8.
    """
    raw = read_bounded(path, max_bytes)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not UTF-8 text") from None


def load_tokenizer(directory: Path) -> Tokenizer:
    """Load ``tokenizer.json``; fall back to transformers' converter for vocab/merges-only dirs.

    Raises:
        CheckpointError: no usable tokenizer files.
    """
    path = Path(directory) / "tokenizer.json"
    if path.is_file():
        try:
            return Tokenizer.from_str(read_tokenizer_json(path))
        except CheckpointError:
            raise
        except Exception as e:  # tokenizers raises plain Exception on bad JSON
            raise CheckpointError(f"{path}: not a valid tokenizer.json ({str(e)[:300]})") from None
    if any((Path(directory) / f).is_file() for f in ("vocab.txt", "vocab.json")):
        from transformers import AutoTokenizer  # converts slow vocab files to a fast tokenizer

        try:
            return AutoTokenizer.from_pretrained(str(directory), use_fast=True).backend_tokenizer
        except Exception as e:
            raise CheckpointError(f"{directory}: cannot build a tokenizer from its vocab files ({e})") from None
    raise CheckpointError(f"{directory}: no tokenizer.json (or vocab.txt/vocab.json); "
                          "copy the model's tokenizer files into the checkpoint directory")
