"""The adaptive debounce (table-driven keystroke timings) and the debounce tickets."""

from __future__ import annotations

import asyncio
import time

import pytest

from fimls.scheduler import MIN_SAMPLES, PAUSE, Keystroke, Rhythm, Scheduler, debounce


def rhythm_of(gaps: list[float]) -> Rhythm:
    rhythm = Rhythm()
    at = 100.0
    rhythm.keystroke(at)
    for gap in gaps:
        at += gap
        rhythm.keystroke(at)
    return rhythm


STEADY = [0.08, 0.10, 0.12, 0.09, 0.11, 0.10, 0.12, 0.08, 0.10, 0.11]  # ~10 keys a second
SLOW = [0.45, 0.50, 0.40, 0.55, 0.48, 0.52, 0.44, 0.50, 0.47, 0.53]  # ~2 keys a second
UPPER = 0.15


@pytest.mark.parametrize(
    ("gaps", "inserted", "line_prefix", "line_suffix", "expected"),
    [
        # Too few keystrokes to know the rhythm: the upper bound.
        ([0.1, 0.1], "a", "x = a", "", UPPER),
        # Enter: a pause is likely, ask at once (also on a new line's auto-indent).
        (STEADY, "\n", "", "", 0.0),
        (STEADY, "\n    ", "    ", "", 0.0),
        (STEADY, "\n    ", "    ", ")", 0.0),
        # Enter in the middle of a line is an edit, not the end of a thought.
        (STEADY, "\n", "", "rest_of_line()", pytest.approx(0.12 * 1.25, abs=0.01)),
        # The end of a statement, typed just now.
        (STEADY, ";", "int x = 1;", "", 0.0),
        (STEADY, ":", "    if ready:", "", 0.0),
        (STEADY, "{", "function f() {", "}", 0.0),
        # ...but not an old one while typing goes on after it.
        (STEADY, "a", "x = 1; a", "", pytest.approx(0.12 * 1.25, abs=0.01)),
        # Steady typing inside a word: just longer than the usual longest gap (p90 ~ 0.12 s).
        (STEADY, "e", "valu", "", pytest.approx(0.12 * 1.25, abs=0.01)),
        # A word ends while typing fast: still only the usual gap.
        (STEADY, " ", "return ", "", pytest.approx(0.12 * 1.25, abs=0.01)),
        # A word ends while typing slowly: a pause is likely.
        (SLOW, " ", "return ", "", 0.0),
        (SLOW, "(", "print(", ")", 0.0),
        # Slow typing inside a word: the wait is capped by the upper bound.
        (SLOW, "t", "retur", "", UPPER),
        # A deletion (nothing inserted) mid-word waits like any keystroke.
        (STEADY, "", "valu", "", pytest.approx(0.12 * 1.25, abs=0.01)),
    ],
)
def test_debounce_table(gaps, inserted, line_prefix, line_suffix, expected):
    keystroke = Keystroke(inserted, 200.0)
    assert debounce(keystroke, line_prefix, line_suffix, rhythm_of(gaps), UPPER) == expected


def test_no_keystroke_known_means_the_upper_bound():
    assert debounce(None, "x = ", "", rhythm_of(STEADY), UPPER) == UPPER


def test_very_fast_typing_has_a_floor():
    assert debounce(Keystroke("a", 0.0), "xa", "", rhythm_of([0.01] * 20), 1.0) == pytest.approx(0.03)


def test_pauses_are_not_part_of_the_rhythm():
    rhythm = rhythm_of([0.1] * MIN_SAMPLES + [PAUSE + 2.0, 5.0, 30.0])
    assert rhythm.usual_gap() == pytest.approx(0.1)
    assert rhythm.typical() == pytest.approx(0.1)


def test_the_rhythm_follows_a_change_of_pace():
    rhythm = rhythm_of(SLOW * 2 + STEADY * 8)
    assert rhythm.typical() == pytest.approx(0.10, abs=0.02)


async def test_the_wait_runs_from_the_last_keystroke():
    scheduler = Scheduler()
    scheduler.keystroke("file:///a", "x", at=time.monotonic() - 0.2)
    ticket = scheduler.claim("file:///a", 0.15)
    # The time since the keystroke already covers the wait.
    assert await asyncio.wait_for(ticket.wait(), 0.05) is True


async def test_without_a_keystroke_the_wait_starts_now():
    before = time.monotonic()
    ticket = Scheduler().claim("file:///a", 0.15)
    assert before + 0.15 <= ticket.deadline <= time.monotonic() + 0.15


async def test_newer_request_ends_the_wait_of_the_older_one():
    scheduler = Scheduler()
    old = scheduler.claim("file:///a", 30)
    waiting = asyncio.ensure_future(old.wait())
    await asyncio.sleep(0)
    scheduler.claim("file:///a", 30)
    assert await asyncio.wait_for(waiting, 5) is False
    assert old.superseded


async def test_kinds_and_documents_do_not_supersede_each_other():
    scheduler = Scheduler()
    inline = scheduler.claim("file:///a", 0)
    scheduler.claim("file:///a", 0, kind="classic")
    scheduler.claim("file:///b", 0)
    assert not inline.superseded and len(scheduler) == 3
    scheduler.forget("file:///a")
    assert inline.superseded and len(scheduler) == 3
