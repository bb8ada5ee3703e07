"""Command line: serve LSP (stdio or TCP), ``complete`` one position, or run ``doctor``."""

from __future__ import annotations

import argparse
import json
import sys

from fimls import __version__, log

HINT = (
    "fimls is a language server: it speaks LSP on stdin/stdout and is started by your editor. "
    "Try `fimls doctor`, `fimls complete FILE:LINE:COL` or `fimls --help`. Ctrl-D quits."
)


def _common() -> argparse.ArgumentParser:
    """Options valid before or after a subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given after the subcommand must not be reset by the subparser's default.
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help="-v info, -vv debug, -vvv also every LSP message (document text included)",
    )
    common.add_argument("--log-file", metavar="PATH", default=argparse.SUPPRESS, help="log here, not stderr")
    common.add_argument(
        "--config",
        metavar="JSON",
        default=argparse.SUPPRESS,
        help="settings as camelCase JSON, like initializationOptions (for complete and doctor)",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="fimls",
        parents=[common],
        description="AI code completion for every editor through FIM (fill-in-the-middle). "
        "With no command, speaks LSP on stdio.",
    )
    parser.add_argument("--version", action="version", version=f"fimls {__version__}")
    parser.add_argument("--stdio", action="store_true", help="speak LSP on stdio (the default)")
    parser.add_argument("--tcp", action="store_true", help="speak LSP over TCP (for debugging)")
    parser.add_argument("--host", default="127.0.0.1", help="TCP host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=2087, help="TCP port (default 2087)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    complete = commands.add_parser(
        "complete",
        parents=[common],
        help="print the completion fimls would offer at FILE:LINE:COL",
        description="LINE and COL are 1-based; COL counts characters (code points). A column past the "
        "end of the line is an error.",
    )
    complete.add_argument("target", metavar="FILE:LINE:COL")
    complete.add_argument("--language", default="", help="language id (default: from the extension)")
    commands.add_parser(
        "doctor", parents=[common], help="check the backend: URL, key, models, FIM, and backend specifics"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fimls`` command."""
    args = _parser().parse_args(argv)
    log.setup(getattr(args, "verbose", 0), getattr(args, "log_file", None))
    try:
        raw = json.loads(args.config) if getattr(args, "config", None) else {}
    except ValueError as exc:
        print(f"fimls: --config is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if args.command in ("complete", "doctor"):
        import asyncio

        from fimls.cli import subcommands

        if args.command == "complete":
            return asyncio.run(subcommands.complete(args.target, raw, args.language))
        return asyncio.run(subcommands.doctor(raw))
    if not args.tcp and sys.stdin.isatty():
        print(HINT, file=sys.stderr)
    from fimls.server import create_server

    server = create_server()
    if args.tcp:
        server.start_tcp(args.host, args.port)
    else:
        server.start_io()
    # LSP: exit code 0 only when the client asked for shutdown before exit.
    return 0 if server.shut_down else 1
