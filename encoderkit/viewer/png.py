"""A static grid of every layer x head attention matrix (matplotlib), for reports and the bench page."""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.errors import MissingDependencyError
from ._record import AttentionRecord


def save_png(record: AttentionRecord, path: str | Path, *, layers: Sequence[int] | None = None,
             heads: Sequence[int] | None = None, hide_special: bool = False, dpi: int = 80) -> Path:
    """Write a layers x heads grid of attention heatmaps to ``path`` (atomically); see ``png_bytes``.

    Returns:
        The path written.
    """
    from ..storage.files import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, png_bytes(record, layers=layers, heads=heads, hide_special=hide_special, dpi=dpi))
    return path


def png_bytes(record: AttentionRecord, *, layers: Sequence[int] | None = None,
              heads: Sequence[int] | None = None, hide_special: bool = False, dpi: int = 80) -> bytes:
    """A layers x heads grid of attention heatmaps as PNG bytes.

    Args:
        record: the attention record.
        layers, heads: model indices to draw (default: all).
        hide_special: drop the rows and columns of special tokens.
    Raises:
        InputError: bad layer/head selection.
        MissingDependencyError: matplotlib is not installed.
    """
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise MissingDependencyError("--png needs matplotlib; pip install 'encoderkit[viewer]'") from None
    matplotlib.use("Agg")  # no display here; also keeps a notebook's backend out of it
    import matplotlib.pyplot as plt

    from . import select

    probs, layers, heads = select(record, layers, heads)
    if hide_special:
        keep = ~np.asarray(record.special, dtype=bool)
        probs = probs[..., keep, :][..., keep]
    nl, nh = len(layers), len(heads)
    cell = 0.75 if nh > 4 else 1.6
    fig, axes = plt.subplots(nl, nh, figsize=(0.6 + nh * cell, 0.5 + nl * cell), squeeze=False)
    for a, layer in enumerate(layers):
        for b, head in enumerate(heads):
            ax = axes[a, b]
            # sqrt colour scale: spread-out heads stay visible next to sharp ones (as in the page)
            ax.imshow(np.sqrt(probs[a, b]), cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if a == 0:
                ax.set_title(f"h{head}", fontsize=7)
            if b == 0:
                ax.set_ylabel(f"L{layer}", fontsize=7)
    fig.suptitle(f"attention ({record.backend}, {len(record.tokens)} tokens; sqrt colour scale)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97), pad=0.3, h_pad=0.1, w_pad=0.1)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()
