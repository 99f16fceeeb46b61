"""How the page stores attention: token labels for people, and probabilities packed compactly.

Probabilities are quantized linearly to uint8 (p ~ q / 255, error at most 1/510 ~ 0.002 per value)
and deflated; the page inflates them with the browser's own DecompressionStream, so no library
is needed. A 512-token text on a 24 x 16 model is 100 M values: 100 MB as raw bytes, far less
deflated (attention rows are mostly near-zero). Thumbnails for the model view are pooled here,
from the float32 values, so the grid draws before the full tensor is inflated and keeps detail the
8-bit levels lose: at 512 tokens uniform attention is 1/512, half of one level.
"""
from __future__ import annotations

import base64
import zlib
from functools import lru_cache

import numpy as np

QSCALE = 255  # uint8 levels for probabilities in [0, 1]
QMAX_ERROR = 0.5 / QSCALE  # the rounding bound, stated on the page
DIFF_LEVELS = 127  # int8 levels for a compare difference, scaled per layer by its max |diff|
THUMB = 32  # thumbnail side in cells: a 512-token matrix is max-pooled in 16 x 16 blocks
LOG_DECADES = 6  # log-coded thumbnails: level 1..255 spans p = 1e-6..1, level 0 is p < 1e-6
OCTAVE_LEVELS = 16  # ratio-to-uniform thumbnails: level 128 = uniform, 16 levels per factor of 2
RATIO_SPAN = 3  # their colour scale: full blue at 1/8 x uniform, full red at 8 x


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2/RoBERTa's byte -> printable-character map (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def is_byte_level(tokens: tuple[str, ...]) -> bool:
    """True when the tokens look byte-level BPE: some character is a shifted byte (Ġ, Ċ, Ã...)."""
    # Bytes that are not printable map to U+0100..U+0143; WordPiece text almost never holds them,
    # while any space-prefixed byte-level piece does (Ġ = the shifted space).
    return any("\u0100" <= ch <= "\u0143" for t in tokens for ch in t)


def display_token(token: str, byte_level: bool) -> str:
    """A token as a person reads it: byte-level pieces decoded to UTF-8, a leading space as '␣',
    newlines as '↵'; a piece that holds part of a multi-byte character shows that part as <0xNN>."""
    if not byte_level:
        return token
    dec = _byte_decoder()
    if not token or any(ch not in dec for ch in token):  # a special or added token (' <mask>'): as is
        return token.replace(" ", "␣")
    raw = bytes(dec[ch] for ch in token)
    text = raw.decode("utf-8", errors="backslashreplace")
    text = _hex_escapes(text)
    return text.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥").replace("\r", "")


def _hex_escapes(text: str) -> str:
    r"""``\xc3`` (a lone byte of a split character) -> ``<0xC3>``, readable and unambiguous."""
    import re

    return re.sub(r"\\x([0-9a-f]{2})", lambda m: f"<0x{m.group(1).upper()}>", text)


def quantize(probs: np.ndarray) -> tuple[np.ndarray, float]:
    """uint8 levels of ``probs`` and the largest error of any decoded value (``q / 255``)."""
    q = np.empty(probs.shape, dtype=np.uint8)
    err = 0.0
    for i in range(probs.shape[0]):  # layer by layer: a 512-token roberta-large tensor is 400 MB
        x = np.clip(probs[i], 0.0, 1.0) * QSCALE
        qi = np.rint(x)
        err = max(err, float(np.abs(qi - x).max()) / QSCALE if qi.size else 0.0)
        q[i] = qi.astype(np.uint8)
    return q, err


def quantize_diff(diff: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-layer int8 levels of a signed difference, stored as uint8 (level + 128).

    Returns:
        (levels [layers, heads, seq, seq] uint8, per-layer scale = max |diff| of that layer,
        largest error of any decoded value ``(q - 128) / 127 * scale``).
    """
    scale = np.abs(diff).reshape(diff.shape[0], -1).max(axis=1).astype(np.float64)
    q = np.empty(diff.shape, dtype=np.uint8)
    err = 0.0
    for i in range(diff.shape[0]):
        s = scale[i] if scale[i] > 0 else 1.0
        x = diff[i].astype(np.float64) / s * DIFF_LEVELS
        qi = np.rint(x)
        err = max(err, float(np.abs(qi - x).max()) * s / DIFF_LEVELS)
        q[i] = (qi + 128).astype(np.uint8)
    return q, scale, err


def dequantize(q: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) / QSCALE


def dequantize_diff(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    s = np.asarray(scale, dtype=np.float64).reshape(-1, *([1] * (q.ndim - 1)))
    return ((q.astype(np.float64) - 128) / DIFF_LEVELS * s).astype(np.float32)


def thumbnails(values: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Max-pool each [seq, seq] matrix of ``values`` [layers, heads, seq, seq] to at most THUMB cells.

    Args:
        keep: bool [seq]; rows and columns where it is False are dropped first.
    Returns:
        (uint8 [layers, heads, t, t] scaled so 255 = 1.0, t).
    """
    if keep is not None:
        values = values[..., keep, :][..., keep]
    n = values.shape[-1]
    if n == 0:
        return np.zeros(values.shape[:2] + (0, 0), dtype=np.uint8), 0
    t = min(n, THUMB)
    edges = np.linspace(0, n, t + 1).astype(int)[:-1]
    pooled = np.maximum.reduceat(np.maximum.reduceat(values, edges, axis=-1), edges, axis=-2)
    return np.rint(np.clip(pooled, 0, 1) * 255).astype(np.uint8), t


def pooled(probs: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Max- and mean-pool each [seq, seq] matrix of ``probs`` [layers, heads, seq, seq] to at most THUMB cells.

    Args:
        keep: bool [seq]; rows and columns where it is False are dropped first (not renormalised).
    Returns:
        (max float32 [layers, heads, t, t], mean float32 [layers, heads, t, t], t).
    """
    n = int(np.count_nonzero(keep)) if keep is not None else probs.shape[-1]
    t = min(n, THUMB)
    shape = probs.shape[:2] + (t, t)
    mx, mean = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=np.float32)
    if n == 0:
        return mx, mean, 0
    edges = np.linspace(0, n, t + 1).astype(int)
    starts, sizes = edges[:-1], np.diff(edges)
    area = np.outer(sizes, sizes).astype(np.float32)
    drop = None
    if keep is not None:  # blocks of kept tokens, as ranges of the full matrix with dropped rows/columns zeroed
        drop = ~np.asarray(keep, dtype=bool)
        starts = np.flatnonzero(keep)[starts]
    for i in range(probs.shape[0]):  # layer by layer: a 512-token roberta-large tensor is 400 MB
        v = probs[i]
        if drop is not None and drop.any():
            v = v.copy()  # zeros change no block's sum, nor its max (probabilities are >= 0)
            v[:, drop, :] = 0
            v[:, :, drop] = 0
        mx[i] = np.maximum.reduceat(np.maximum.reduceat(v, starts, axis=-1), starts, axis=-2)
        mean[i] = np.add.reduceat(np.add.reduceat(v, starts, axis=-1, dtype=np.float32), starts, axis=-2) / area
    return mx, mean, t


def log_levels(p: np.ndarray) -> np.ndarray:
    """uint8 log-coded probabilities: 0 for p < 1e-6, else 1 + 254 * (log10 p + 6) / 6 (255 = 1.0).

    One level is a factor of 10 ** (6 / 254) = 1.056: 5.6 % steps at any scale, so a thumbnail of
    attention spread over 512 tokens (p ~ 0.002) keeps as much detail as one of sharp attention."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        x = 1 + (LOG_DECADES + np.log10(np.maximum(p, 1e-30))) * 254 / LOG_DECADES
    return np.where(p >= 10.0 ** -LOG_DECADES, np.rint(np.clip(x, 1, 255)), 0).astype(np.uint8)


def ratio_levels(mean: np.ndarray, n: int) -> np.ndarray:
    """uint8 levels of log2(mean p * n), pooled attention relative to uniform attention (1/n).

    Level = 128 + 16 * log2(ratio), clipped to 0..255: 1/256 x .. 256 x uniform, 1/16 of an octave a level.
    """
    with np.errstate(divide="ignore"):
        x = 128 + OCTAVE_LEVELS * np.log2(np.maximum(np.asarray(mean, dtype=np.float64) * max(n, 1), 1e-30))
    return np.rint(np.clip(x, 0, 255)).astype(np.uint8)


def pack(data: np.ndarray, level: int = 3) -> str:
    """Deflate (zlib format, what DecompressionStream("deflate") reads) then base64.

    Level 3: on 100 M attention levels (512 tokens, 24 x 16) it takes 1.3 s for 14.8 MB where
    level 6 takes 6 s for 12.6 MB."""
    return base64.b64encode(zlib.compress(np.ascontiguousarray(data).tobytes(), level)).decode("ascii")


def unpack(text: str, dtype=np.uint8) -> np.ndarray:
    """The inverse of ``pack`` (flat)."""
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype)
