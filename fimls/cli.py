"""Command line: serve LSP (stdio or TCP), ``complete`` one position, or run ``doctor``.

Only the standard library is imported before the LSP ``initialize`` answer goes out
(:mod:`fimls.early`); everything else loads after it.
"""

from __future__ import annotations

import argparse
import json
import sys

from fimls import __version__, log


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fimls",
        description="AI code completion for every editor through DeepSeek FIM. "
        "With no command, speaks LSP on stdio.",
    )
    parser.add_argument("--version", action="version", version=f"fimls {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v info, -vv debug")
    parser.add_argument("--log-file", metavar="PATH", help="log here instead of stderr")
    parser.add_argument("--stdio", action="store_true", help="speak LSP on stdio (the default)")
    parser.add_argument("--tcp", action="store_true", help="speak LSP over TCP (for debugging)")
    parser.add_argument("--host", default="127.0.0.1", help="TCP host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=2087, help="TCP port (default 2087)")
    parser.add_argument(
        "--config",
        metavar="JSON",
        help="settings as camelCase JSON, like initializationOptions (for complete/doctor)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    complete = commands.add_parser(
        "complete", help="print the completion fimls would offer at FILE:LINE:COL (1-based)"
    )
    complete.add_argument("target", metavar="FILE:LINE:COL")
    complete.add_argument("--language", default="", help="language id (default: from the extension)")
    commands.add_parser("doctor", help="check the key, the model, the balance and one FIM call")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fimls`` command."""
    args = _parser().parse_args(argv)
    log.setup(args.verbose, args.log_file)
    try:
        raw = json.loads(args.config) if args.config else {}
    except ValueError as exc:
        print(f"fimls: --config is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if args.command in ("complete", "doctor"):
        import asyncio

        from fimls import commands

        if args.command == "complete":
            return asyncio.run(commands.complete(args.target, raw, args.language))
        return asyncio.run(commands.doctor(raw))
    early = None
    if not args.tcp:
        from fimls import early as early_answer

        early = early_answer.answer(sys.stdin.fileno(), sys.stdout.fileno())
    from fimls.server import create_server

    server = create_server()
    server.early = early
    if args.tcp:
        server.start_tcp(args.host, args.port)
    else:
        server.start_io()
    # LSP: exit code 0 only when the client asked for shutdown before exit.
    return 0 if server.shut_down else 1
