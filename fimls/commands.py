"""``fimls complete`` and ``fimls doctor``: the engine without an editor."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from fimls import __version__, log
from fimls.backend import BackendError, FimRequest, public_url
from fimls.config import Settings, parse_settings
from fimls.document import UTF32, Document
from fimls.engine import MISSING_KEY, Engine
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


def _parse_target(target: str) -> tuple[Path, int, int]:
    path, _, rest = target.rpartition(":")
    path2, _, line = path.rpartition(":")
    if not path2:
        raise ValueError(f"expected FILE:LINE:COL, got {target!r}")
    return Path(path2), int(line), int(rest)


def _warn(problem: str) -> None:
    print(f"fimls: {problem}", file=sys.stderr)


def _settings(raw: Any) -> Settings:
    settings, problems = parse_settings(raw)
    for problem in problems:
        print(f"fimls: {problem}", file=sys.stderr)
    log.add_secrets([settings.api_key])
    return settings


async def complete(target: str, raw: Any, language: str) -> int:
    """Print the completion at FILE:LINE:COL (1-based); exit status 0 when there is one."""
    try:
        path, line, col = _parse_target(target)
        text = path.read_text(encoding="utf-8")
    except (ValueError, OSError) as exc:
        print(f"fimls: {exc}", file=sys.stderr)
        return 2
    settings = _settings(raw)
    language = language or _LANGUAGES.get(path.suffix, "")
    if reason := gate_for_file(path, settings.languages, _warn).check_path(path, language):
        print(f"fimls: not sending {path}: {reason}", file=sys.stderr)
        return 1
    doc = Document(path.resolve().as_uri(), text, 0, language)
    where = doc.index_at(line - 1, col - 1, UTF32)
    if where is None or line < 1 or col < 1:
        print(f"fimls: {line}:{col} is outside {path}", file=sys.stderr)
        return 2
    snap = doc.snapshot(
        *where,
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


async def doctor(raw: Any) -> int:
    """Check the URL, key, models, balance and one FIM call; exit status 0 when all pass."""
    settings = _settings(raw)
    engine = Engine(settings)
    failures = 0

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {what}: {detail}")

    try:
        print(f"fimls {__version__}, backend {public_url(settings.base_url)}")
        report(not engine.client.refusal, "base URL", engine.client.refusal or "ok")
        if engine.client.refusal:
            return 1
        report(
            engine.client.has_key,
            "API key",
            "set" if engine.client.has_key else f"missing ({engine.key_problem or MISSING_KEY})",
        )
        if not engine.client.has_key:
            return 1
        try:
            model = await engine.model()
            available = engine.available_models
            if available is None:
                available = await engine.client.models()  # raises the real error
            listed = model in available
            report(
                listed,
                "GET /models",
                f"{len(available)} model(s): {', '.join(available)}; using {model}"
                + ("" if listed else " (NOT listed)"),
            )
        except BackendError as error:
            report(False, "GET /models", str(error))
            model = settings.model or "deepseek-chat"
        try:
            balance = await engine.client.balance()
            report(balance.is_available, "GET /user/balance", balance.describe())
        except BackendError as error:
            report(False, "GET /user/balance", str(error))
        request = FimRequest(
            model=model,
            prompt="def add(a, b):\n    return ",
            suffix="\n",
            max_tokens=8,
            stop=("\n",),
            temperature=0.0,
            top_p=1.0,
            stream=False,
        )
        try:
            result = await engine.client.fim(request, timeout=settings.timeout_ms / 1000)
            report(True, "FIM /beta/completions", f"{result.text!r} ({result.finish_reason})")
        except BackendError as error:
            report(False, "FIM /beta/completions", str(error))
    finally:
        await engine.aclose()
    print("all checks passed" if not failures else f"{failures} check(s) failed")
    return 1 if failures else 0
