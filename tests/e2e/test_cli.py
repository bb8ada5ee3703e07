"""The command line: complete, doctor, version, and the stdio server's stdout hygiene."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SERVER, TEST_KEY, server_env
from fake_deepseek import Reply


def run(
    fake, *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVER, *args], env=env or server_env(fake), capture_output=True, text=True, timeout=60, input=stdin
    )


def test_version(fake):
    result = run(fake, "--version")
    assert result.returncode == 0 and result.stdout.startswith("fimls ")


def test_complete_prints_the_completion(fake, tmp_path: Path):
    fake.default = Reply(text="a + b")
    source = tmp_path / "add.py"
    source.write_text("def add(a, b):\n    return \n", encoding="utf-8")
    result = run(fake, "-vv", "complete", f"{source}:2:12")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a + b\n"
    [request] = fake.fim_requests()
    assert request.body["prompt"] == "def add(a, b):\n    return "
    assert TEST_KEY not in result.stderr + result.stdout


def test_complete_counts_columns_in_characters(fake, tmp_path: Path):
    fake.default = Reply(text=" + 1")
    source = tmp_path / "u.py"
    source.write_text("s = '😀中'\n", encoding="utf-8")
    result = run(fake, "complete", f"{source}:1:9")
    assert result.returncode == 0, result.stderr
    assert fake.fim_requests()[0].body["prompt"] == "s = '😀中'"


@pytest.mark.parametrize("target", ["nofile.py:1:1", "x", "{src}:99:1"])
def test_complete_bad_targets(fake, tmp_path: Path, target):
    source = tmp_path / "a.py"
    source.write_text("x = 1\n", encoding="utf-8")
    result = run(fake, "complete", target.format(src=source))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("fimls:")


def test_complete_reports_backend_errors(fake, tmp_path: Path):
    fake.default = Reply(status=402)
    source = tmp_path / "a.py"
    source.write_text("x = \n", encoding="utf-8")
    result = run(fake, "complete", f"{source}:1:5")
    assert result.returncode == 1
    assert "insufficient balance" in result.stderr


def test_doctor_passes(fake):
    result = run(fake, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("PASS  API key") for line in lines)
    assert any(
        line.startswith("PASS  models (GET /models)") and "using deepseek-flash" in line for line in lines
    )
    assert any(line.startswith("PASS  GET /user/balance: 12.34 USD (available)") for line in lines)
    assert any(line.startswith("PASS  FIM (POST /beta/completions)") for line in lines)
    assert [r.path for r in fake.requests] == ["/models", "/user/balance", "/beta/completions"]
    assert TEST_KEY not in result.stdout + result.stderr


def test_doctor_fails_clearly(fake):
    env = server_env(fake, DEEPSEEK_API_KEY="sk-wrong-key-000000000")
    result = run(fake, "doctor", env=env)
    assert result.returncode == 1
    assert "FAIL  models (GET /models)" in result.stdout and "rejected the API key (401)" in result.stdout
    assert "sk-wrong-key-000000000" not in result.stdout + result.stderr


def test_doctor_without_key(fake):
    env = server_env(fake)
    del env["DEEPSEEK_API_KEY"]
    result = run(fake, "doctor", env=env)
    assert result.returncode == 1 and "FAIL  API key: no API key: set DEEPSEEK_API_KEY" in result.stdout
    assert fake.requests == []


def test_doctor_unavailable_balance_and_unlisted_model(fake):
    fake.balance = {"is_available": False, "balance_infos": []}
    result = run(fake, "--config", json.dumps({"model": "deepseek-gone"}), "doctor")
    assert result.returncode == 1
    assert "FAIL  models (GET /models)" in result.stdout and "NOT listed" in result.stdout
    assert "FAIL  GET /user/balance: none (NOT available)" in result.stdout


def test_stdio_server_writes_only_protocol_to_stdout(fake):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}})
    exit_msg = json.dumps({"jsonrpc": "2.0", "method": "exit"})
    frames = "".join(f"Content-Length: {len(m)}\r\n\r\n{m}" for m in (body, exit_msg)).encode()
    result = subprocess.run(
        [*SERVER, "-vv"], env=server_env(fake), input=frames, capture_output=True, timeout=30
    )
    out = result.stdout.decode()
    assert out.startswith("Content-Length: ")
    payload = json.loads(out.split("\r\n\r\n", 1)[1])
    assert payload["result"]["capabilities"]["inlineCompletionProvider"] == {}
    assert result.returncode == 1  # exit without shutdown
    assert b"INFO" in result.stderr  # logs went to stderr


def test_log_file(fake, tmp_path: Path):
    log = tmp_path / "fimls.log"
    fake.default = Reply(text="1")
    source = tmp_path / "a.py"
    source.write_text("x = \n", encoding="utf-8")
    result = run(fake, "-v", "--log-file", str(log), "complete", f"{source}:1:5")
    assert result.returncode == 0
    assert "using model deepseek-flash" in log.read_text()
    assert TEST_KEY not in log.read_text()


def test_python_dash_m_and_console_script_agree(fake):
    script = Path(sys.executable).with_name("fimls")
    assert script.exists()
    a = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=30)
    assert a.stdout == run(fake, "--version").stdout


def test_tcp_mode(fake):
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [*SERVER, "--tcp", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env(fake),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not listen"
                time.sleep(0.1)
        with conn:
            body = json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}
            )
            conn.sendall(f"Content-Length: {len(body)}\r\n\r\n{body}".encode())
            data = b""
            while b'"result"' not in data or not data.rstrip().endswith(b"}"):
                chunk = conn.recv(65536)
                assert chunk, "connection closed"
                data += chunk
        assert b'"inlineCompletionProvider"' in data
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.stdout is not None and proc.stdout.read() == b""  # nothing on stdout in TCP mode either


def frames(*messages: dict) -> bytes:
    bodies = [json.dumps(m).encode() for m in messages]
    return b"".join(b"Content-Length: %d\r\n\r\n" % len(b) + b for b in bodies)


def test_stdin_from_a_file_is_served_and_ends(fake, tmp_path: Path):
    # epoll cannot watch files: a thread reads them, and the session still runs to its end.
    session = tmp_path / "session.lsp"
    session.write_bytes(
        frames(
            {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}},
            {"jsonrpc": "2.0", "method": "initialized", "params": {}},
            {"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
            {"jsonrpc": "2.0", "method": "exit"},
        )
    )
    with session.open("rb") as stdin:
        result = subprocess.run(
            [*SERVER], env=server_env(fake), stdin=stdin, capture_output=True, timeout=30, check=False
        )
    parts = result.stdout.split(b"Content-Length: ")[1:]
    answers = [json.loads(part.split(b"\r\n\r\n", 1)[1]) for part in parts]
    assert result.returncode == 0, result.stderr
    assert [a.get("id") for a in answers if "id" in a] == [1, 2]


@pytest.mark.parametrize("source", ["/dev/null", "garbage"])
def test_stdin_that_ends_without_a_session_exits_promptly(fake, source):
    if source == "/dev/null":
        with open(os.devnull, "rb") as stdin:
            result = subprocess.run(
                [*SERVER], env=server_env(fake), stdin=stdin, capture_output=True, timeout=30
            )
    else:
        result = subprocess.run(
            [*SERVER], env=server_env(fake), input=b"garbage\n", capture_output=True, timeout=30
        )
    assert result.returncode == 1  # no shutdown was asked for
    assert b"Traceback" not in result.stderr and result.stdout == b""


def test_global_options_work_after_the_subcommand(fake, tmp_path: Path):
    fake.default = Reply(text="1")
    source = tmp_path / "a.py"
    source.write_text("x = \n", encoding="utf-8")
    log = tmp_path / "fimls.log"
    options = json.dumps({"maxTokens": 7})
    result = run(fake, "complete", "--config", options, f"{source}:1:5", "-v", "--log-file", str(log))
    assert result.returncode == 0, result.stderr
    assert fake.fim_requests()[0].body["max_tokens"] == 7
    assert "INFO" in log.read_text(encoding="utf-8")
    doctor = run(fake, "doctor", "-vv")
    assert doctor.returncode == 0 and "DEBUG" in doctor.stderr


@pytest.mark.parametrize(
    ("position", "message"),
    [
        ("x:1", "LINE must be a whole number from 1 up, got 'x'"),
        ("2:zero", "COL must be a whole number from 1 up, got 'zero'"),
        ("one:1", "LINE must be a whole number from 1 up, got 'one'"),
        ("0:1", "LINE must be a whole number from 1 up, got '0'"),
        ("1:7", "line 1 of {src} has 5 character(s); column 7 is past its end"),
        ("3:1", "{src} has 2 line(s); there is no line 3"),
    ],
)
def test_bad_line_or_column_is_a_clear_error(fake, tmp_path: Path, position, message):
    source = tmp_path / "a.py"
    source.write_text("x = 1\n", encoding="utf-8")
    result = run(fake, "complete", f"{source}:{position}")
    assert result.returncode == 2 and result.stdout == ""
    assert message.format(src=source) in result.stderr
    assert "invalid literal" not in result.stderr and "Traceback" not in result.stderr
    assert fake.requests == []


def test_the_column_right_after_the_last_character_is_allowed(fake, tmp_path: Path):
    fake.default = Reply(text=" + 1")
    source = tmp_path / "a.py"
    source.write_text("x = 1\n", encoding="utf-8")
    assert run(fake, "complete", f"{source}:1:6").returncode == 0
    assert fake.fim_requests()[0].body["prompt"] == "x = 1"


def test_help_documents_every_verbosity():
    result = subprocess.run([*SERVER, "--help"], capture_output=True, text=True, timeout=30)
    assert "-vvv" in result.stdout and "every LSP message" in result.stdout


def test_plain_fimls_on_a_terminal_says_what_it_is(fake):
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        SERVER, env=server_env(fake), stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    os.close(follower)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert line.startswith("fimls is a language server: it speaks LSP on stdin/stdout")
    finally:
        proc.kill()
        proc.wait(10)
        os.close(leader)


def test_tcp_mode_shuts_down_without_a_traceback(fake):
    import signal
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [*SERVER, "--tcp", "--port", str(port)], env=server_env(fake), stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "server did not listen"
            time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    assert b"Traceback" not in err, err.decode()
