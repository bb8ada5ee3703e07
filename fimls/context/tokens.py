"""Identifier tokens and the similarity measures that rank snippets.

Pure functions. Tokens are identifiers (a letter or ``_`` then word characters, Unicode
included) minus a short list of keywords that every language shares, so that two windows are
similar because they name the same things, not because both contain ``return`` and ``if``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Set

IDENTIFIER = re.compile(r"[^\W\d]\w*")

STOP_WORDS = frozenset(
    """
    and as assert async await break case catch class const continue def default del do elif else
    enum export extends false finally for from function if import in is let new none not null of or
    pass raise return self static super switch this throw true try type typeof undefined var void
    while with yield public private protected interface implements package struct fn func impl pub
    mut use mod match go defer chan map string int bool float double char long short unsigned
    the a an to be it that None True False
    """.split()
)


def identifiers(text: str) -> list[str]:
    """Identifier tokens of ``text`` in order, keywords included."""
    return IDENTIFIER.findall(text)


def token_set(text: str) -> frozenset[str]:
    """The distinct identifiers of ``text`` that are not common keywords."""
    return frozenset(IDENTIFIER.findall(text)).difference(STOP_WORDS)


def union(sets: Iterable[frozenset[str]]) -> frozenset[str]:
    """The union of ``sets``."""
    return frozenset().union(*sets)


def jaccard(a: Set[str], b: Set[str]) -> float:
    """|a ∩ b| / |a ∪ b| (0.0 when both are empty)."""
    if not a or not b:
        return 0.0
    common = len(a & b) if len(a) <= len(b) else len(b & a)
    return common / (len(a) + len(b) - common)


def dice(a: Set[str], b: Set[str]) -> float:
    """2·|a ∩ b| / (|a| + |b|): llama.vim's near-duplicate measure (0.0 when both are empty)."""
    if not a and not b:
        return 0.0
    return 2 * len(a & b) / (len(a) + len(b))
