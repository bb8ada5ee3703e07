"""Code from other files, sent with a completion: sources, ranking, budget and layout.

``ContextBuilder`` chooses the chunks (on coarse events only, so the block stays byte-identical
between them and the prompt cache keeps hitting); ``comment_block`` and ``infill_extra`` lay them
out for suffix-field APIs and llama.cpp ``/infill``; raw templates render ``Chunk.path`` and
``Chunk.text`` with their own file separators.
"""

from __future__ import annotations

from fimls.context.builder import ContextBuilder, Tuning
from fimls.context.layout import comment_block, infill_extra
from fimls.context.model import EDITS, IMPORTS, OPEN, Chunk, Gate

__all__ = [
    "EDITS",
    "IMPORTS",
    "OPEN",
    "Chunk",
    "ContextBuilder",
    "Gate",
    "Tuning",
    "comment_block",
    "infill_extra",
]
