"""``fimls complete`` and ``fimls doctor``: the engine without an editor (prints to stdout and stderr)."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from fimls import __version__
from fimls.backends import BackendError, FimRequest, Finish
from fimls.config import Settings, parse_settings
from fimls.document import UTF32, Document
from fimls.engine import Engine
from fimls.privacy import gate_for_file

_LANGUAGES = {
    ".py": "python",
    ".js": "javascript",
    ".ts": "typescript",
    ".tsx": "typescriptreact",
    ".jsx": "javascriptreact",
    ".go": "go",
    ".rs": "rust",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".java": "java",
    ".lua": "lua",
}


class UsageError(Exception):
    """The command line asks for something that cannot be done."""


def parse_target(target: str) -> tuple[Path, int, int]:
    """``FILE:LINE:COL`` (1-based) as a path and two numbers."""
    path, _, col = target.rpartition(":")
    path, _, line = path.rpartition(":")
    if not path:
        raise UsageError(f"expected FILE:LINE:COL, got {target!r}")
    for name, value in (("LINE", line), ("COL", col)):
        if not value.isdigit() or int(value) < 1:
            raise UsageError(f"{name} must be a whole number from 1 up, got {value!r} in {target!r}")
    return Path(path), int(line), int(col)


def _warn(problem: str) -> None:
    print(f"fimls: {problem}", file=sys.stderr)


def _settings(raw: Any) -> Settings:
    settings, problems = parse_settings(raw)
    for problem in problems:
        print(f"fimls: {problem}", file=sys.stderr)
    return settings


def _document(path: Path, line: int, col: int, language: str) -> tuple[Document, tuple[int, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    doc = Document(path.resolve().as_uri(), text, 0, language or _LANGUAGES.get(path.suffix, ""))
    if line > len(doc.lines):
        raise UsageError(f"{path} has {len(doc.lines)} line(s); there is no line {line}")
    width = len(doc.line_text(line - 1))
    if col > width + 1:
        raise UsageError(f"line {line} of {path} has {width} character(s); column {col} is past its end")
    return doc, (line - 1, col - 1)


async def complete(target: str, raw: Any, language: str) -> int:
    """Print the completion at FILE:LINE:COL (1-based); exit status 0 when there is one."""
    try:
        path, line, col = parse_target(target)
        doc, (row, column) = _document(path, line, col, language)
    except UsageError as exc:
        print(f"fimls: {exc}", file=sys.stderr)
        return 2
    settings = _settings(raw)
    if reason := gate_for_file(path, settings.languages, _warn).check_path(path, doc.language_id):
        print(f"fimls: not sending {path}: {reason}", file=sys.stderr)
        return 1
    snap = doc.snapshot(
        row,
        column,
        encoding=UTF32,
        max_prefix=settings.max_prefix_chars,
        max_suffix=settings.max_suffix_chars,
        anchor=settings.prompt_anchor_lines,
    )
    errors: list[BackendError] = []
    engine = Engine(settings, on_error=errors.append)
    try:
        suggestions = await engine.complete(snap)
    finally:
        await engine.aclose()
    if errors:
        print(f"fimls: {errors[-1]}", file=sys.stderr)
        return 1
    if not suggestions:
        print("fimls: no completion at this position", file=sys.stderr)
        return 1
    for suggestion in suggestions:
        sys.stdout.write(suggestion.text + snap.line_suffix[: suggestion.replace] + "\n")
    return 0


class _Report:
    def __init__(self) -> None:
        self.failures = 0

    def __call__(self, ok: bool, what: str, detail: str) -> None:
        self.failures += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {what}: {detail}")


async def doctor(raw: Any) -> int:
    """Check the URL, key, models, the backend's specifics and one FIM call; 0 when all pass."""
    settings = _settings(raw)
    engine = Engine(settings)
    backend = engine.backend
    report = _Report()
    try:
        print(f"fimls {__version__}, backend {backend.label}")
        report(not backend.refusal, "base URL", backend.refusal or "ok")
        if backend.refusal:
            return 1
        report(
            not engine.key_problem,
            "API key",
            "set" if backend.has_key else engine.key_problem or "none needed",
        )
        if engine.key_problem:
            return 1
        model = await _check_models(engine, settings, report)
        for check in await backend.diagnose(model):
            report(check.ok, check.what, check.detail)
        await _check_fim(engine, model, settings, report)
    finally:
        await engine.aclose()
    print("all checks passed" if not report.failures else f"{report.failures} check(s) failed")
    return 1 if report.failures else 0


async def _check_models(engine: Engine, settings: Settings, report: _Report) -> str:
    what = f"models (GET {engine.backend.models_path})"
    model = await engine.model()
    available = engine.available_models
    if available is None:
        try:
            available = await engine.backend.models()  # raises the real error
        except BackendError as error:
            report(False, what, str(error))
            return model
    listed = engine.backend.lists(model, available)
    report(
        listed,
        what,
        f"{len(available)} model(s): {', '.join(available) or 'none'}; using {model}"
        + ("" if listed else " (NOT listed)"),
    )
    return model


async def _check_fim(engine: Engine, model: str, settings: Settings, report: _Report) -> None:
    request = FimRequest(
        model=model,
        prefix="def add(a, b):\n    return ",
        suffix="\n",
        max_tokens=8,
        stop=("\n",),
        stream=False,
    )
    what = f"FIM (POST {engine.backend.path})"
    parts: list[str] = []
    finish: Finish | None = None
    started = time.monotonic()
    deadline = started + settings.timeout_ms / 1000
    try:
        async with contextlib.aclosing(engine.backend.generate(request, deadline)) as events:
            async for event in events:
                if isinstance(event, Finish):
                    finish = event
                else:
                    parts.append(event)
    except BackendError as error:
        report(False, what, str(error))
        return
    took = (time.monotonic() - started) * 1000
    reason = finish.reason if finish else None
    report(True, what, f"{''.join(parts)!r} ({reason}, {took:.0f} ms)")
