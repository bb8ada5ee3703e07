"""Ranking, budget, one window per file and the order of the block (``fimls.context.selection``)."""

from __future__ import annotations

import random

from fimls.context.model import EDITS, ELISION, IMPORTS, OPEN, Candidate
from fimls.context.selection import fit, select
from fimls.context.tokens import dice, jaccard, token_set
from fimls.context.windows import repeat_lines, repeats, windows


def candidate(
    source: str, name: str, score: float, lines: int = 5, start: int = 0, tier: int = 0
) -> Candidate:
    text = tuple(f"{name}_{i} = {i}" for i in range(lines))
    return Candidate(source, f"file:///w/{name}.py", f"{name}.py", start, text, score, tier)


def test_token_sets_ignore_keywords_and_numbers() -> None:
    assert token_set("def load(self, path): return open(path) if path else None  # 42 x2") == {
        "load",
        "path",
        "open",
        "x2",
    }
    assert token_set("größe = straße") == {"größe", "straße"}


def test_jaccard_and_dice() -> None:
    a, b = frozenset("abcd"), frozenset("cdef")
    assert jaccard(a, b) == 2 / 6
    assert dice(a, b) == 0.5
    assert jaccard(a, frozenset()) == 0.0
    assert jaccard(a, a) == 1.0


def test_windows_cover_every_line_on_a_fixed_grid() -> None:
    lines = [f"name{i} = {i}\n" for i in range(65)]
    found = windows(lines, 60, 10)
    assert [found.span(i) for i in range(len(found.sizes))] == [(0, 60), (10, 65)]
    assert found.sizes == (60, 55)
    short = windows(lines[:5], 60, 10)
    assert [short.span(i) for i in range(len(short.sizes))] == [(0, 5)]


def test_window_scores_are_jaccard_over_each_windows_identifiers() -> None:
    lines = [f"name{i} = {i}\n" for i in range(65)]
    found = windows(lines, 60, 10)
    query = frozenset({"name5", "name62", "other"})
    scored = {(w.start, w.end): w.score for w in found.scored(query)}
    assert scored == {(0, 60): 1 / (60 + 3 - 1), (10, 65): 1 / (55 + 3 - 1)}
    assert found.scored(frozenset({"missing"})) == []
    assert found.scored(frozenset()) == []
    every = frozenset(f"name{i}" for i in range(10, 65))
    assert {(w.start, w.score) for w in found.scored(every)} == {(0, 50 / 65), (10, 1.0)}


def test_repeats_counts_meaningful_lines_only() -> None:
    seen = repeat_lines(["    total = compute(a)\n", "}\n", "return total\n"])
    assert repeats(["total = compute(a)", "}", "x = other(b)", "return total"], seen)
    assert not repeats(["total = compute(a)", "x = other(b)", "y = third(c)"], seen)
    assert repeats(["}", "", "  )"], seen)  # nothing meaningful: no use sending it


def test_fit_keeps_whole_leading_lines_within_the_budget() -> None:
    lines = ["", "alpha = 1", "beta = 2", "gamma = 3", "", "delta = 4", ""]
    assert fit(lines, 1000) == ("alpha = 1\nbeta = 2\ngamma = 3\n\ndelta = 4\n", 1)
    assert fit(lines, 31) == ("alpha = 1\nbeta = 2\ngamma = 3\n", 1)
    assert fit(lines, 25) is None  # fewer than three lines would fit
    assert fit(["x = 1"], 10) == ("x = 1\n", 0)
    assert fit(["", "   "], 100) is None


def test_budget_is_respected_and_best_candidates_win() -> None:
    pools = {OPEN: [candidate(OPEN, f"f{i}", score=i / 10, lines=10) for i in range(1, 8)]}
    chunks = select(pools, 300)
    assert sum(len(c.text) for c in chunks) <= 300
    # Each window is 90 characters: the best three fit whole, the fourth best is cut to three lines.
    assert [c.path for c in chunks] == ["f4.py", "f5.py", "f6.py", "f7.py"]
    assert chunks[0].text == "f4_0 = 0\nf4_1 = 1\nf4_2 = 2\n"


def test_a_window_too_long_is_cut_to_whole_lines() -> None:
    chunks = select({OPEN: [candidate(OPEN, "big", 0.5, lines=50)]}, 100)
    assert chunks[0].text == "".join(f"big_{i} = {i}\n" for i in range(10))
    assert len(chunks[0].text) <= 100


def test_one_window_per_file_across_sources() -> None:
    same = candidate(IMPORTS, "shared", 0.1)
    pools = {
        IMPORTS: [same],
        OPEN: [candidate(OPEN, "shared", 0.9, start=40), candidate(OPEN, "other", 0.2)],
        EDITS: [candidate(EDITS, "shared", 0.8, start=80)],
    }
    chunks = select(pools, 10_000)
    assert [(c.path, c.source, c.line) for c in chunks] == [("other.py", OPEN, 0), ("shared.py", IMPORTS, 0)]


def test_sources_fill_the_budget_in_priority_order() -> None:
    pools = {
        EDITS: [candidate(EDITS, "e", 0.9, lines=10)],
        OPEN: [candidate(OPEN, "o", 0.9, lines=10)],
        IMPORTS: [candidate(IMPORTS, "i", 0.1, lines=10)],
    }
    # Each window is 80 characters.
    assert [c.source for c in select(pools, 85)] == [IMPORTS]
    assert [c.source for c in select(pools, 165)] == [OPEN, IMPORTS]
    assert [c.source for c in select(pools, 240)] == [OPEN, IMPORTS, EDITS]


def test_block_order_best_last_within_each_group() -> None:
    pools = {
        OPEN: [candidate(OPEN, "o_low", 0.1), candidate(OPEN, "o_high", 0.9), candidate(OPEN, "o_mid", 0.5)],
        IMPORTS: [candidate(IMPORTS, "i_far", 0.2), candidate(IMPORTS, "i_near", 0.7)],
        EDITS: [candidate(EDITS, "e_low", 0.3), candidate(EDITS, "e_high", 0.6)],
    }
    assert [c.path for c in select(pools, 10_000)] == [
        "o_low.py",
        "o_mid.py",
        "o_high.py",
        "i_far.py",
        "i_near.py",
        "e_low.py",
        "e_high.py",
    ]


def test_same_language_tier_goes_first_whatever_the_score() -> None:
    pools = {OPEN: [candidate(OPEN, "other_language", 0.9, lines=10, tier=1), candidate(OPEN, "same", 0.05)]}
    assert [c.path for c in select(pools, 100)] == ["same.py"]


def test_ties_are_broken_by_path_then_line_whatever_the_input_order() -> None:
    items = [candidate(OPEN, name, 0.5, start=start) for name in ("b", "a", "c") for start in (0,)]
    items.append(candidate(EDITS, "d", 0.5, start=30))
    items.append(candidate(EDITS, "e", 0.5, start=10))
    expected = None
    rng = random.Random(3)
    for _ in range(20):
        rng.shuffle(items)
        pools = {OPEN: [c for c in items if c.source == OPEN], EDITS: [c for c in items if c.source == EDITS]}
        result = select(pools, 10_000)
        if expected is None:
            expected = result
        assert result == expected
    assert expected is not None
    assert [c.path for c in expected] == ["c.py", "b.py", "a.py", "e.py", "d.py"]


def test_excerpts_keep_their_line_spans_and_never_end_in_an_elision() -> None:
    lines = ("a1 = 1", "b2 = 2", "c3 = 3", ELISION, "last_one = 4")
    excerpts = Candidate(IMPORTS, "file:///w/x.py", "x.py", 10, lines, 1.0, numbers=(10, 11, 12, -1, 50))
    whole = select({IMPORTS: [excerpts]}, 1000)[0]
    assert whole.text == "a1 = 1\nb2 = 2\nc3 = 3\n...\nlast_one = 4\n"
    assert (whole.line, whole.spans) == (10, ((10, 13), (50, 51)))
    cut = select({IMPORTS: [excerpts]}, 30)[0]  # room for the elision line, not for what follows it
    assert cut.text == "a1 = 1\nb2 = 2\nc3 = 3\n"
    assert cut.spans == ((10, 13),)
    plain = select({OPEN: [candidate(OPEN, "p", 0.5, lines=4, start=7)]}, 1000)[0]
    assert plain.spans == ((7, 11),)
