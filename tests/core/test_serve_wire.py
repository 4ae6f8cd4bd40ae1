"""What the scripts and the service say to each other (:mod:`ohfp_core.serve.wire`), and the
two clients' own copies of it: the thin client and the curl scripts must write the no-answer
reply byte for byte as the service's code would."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from ohfp_core.converter import dumps
from ohfp_core.scripts import Service, _sh_curl
from ohfp_core.serve import wire
from ohfp_core.serve.wire import CALLS

CLIENT = Path(wire.__file__).parent / "client.py"


def _client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ohfp_thin_client", CLIENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_form_round_trips_exactly() -> None:
    client = _client()
    env = b"A=1\0B=x=y\0EMPTY=\0"
    content = b'{"x": "\xc3\xa9\r\n--ohfp"}\r\n'
    body = client.form([("env", env), ("file", b"/tmp/in put.json"), ("input", content)])
    fields = wire.parse_form(f"multipart/form-data; boundary={client.BOUNDARY}", body)
    assert fields == {"env": env, "file": b"/tmp/in put.json", "input": content}
    assert wire.parse_env(env) == {"A": "1", "B": "x=y", "EMPTY": ""}


@pytest.mark.parametrize(
    ("kind", "body"),
    [("text/plain", b""), ("multipart/form-data", b""), ("multipart/form-data; boundary=b", b"nope")],
)
def test_a_body_that_is_no_form_is_refused(kind: str, body: bytes) -> None:
    with pytest.raises(ValueError):
        wire.parse_form(kind, body)


def test_only_per_call_variables_may_differ() -> None:
    own = {"PATH": "/usr/bin", "AWS_REGION": "us-east-1", "LC_CTYPE": "C.UTF-8"}
    call = {
        "PATH": "/usr/bin",
        "AWS_REGION": "us-east-1",
        "HF_PROVIDER_NAME": "x",
        "OHFP_LOG_LEVEL": "DEBUG",
        "PWD": "/",
    }
    assert wire.foreign_keys(call, own) == []  # the coerced locale and shell noise do not count
    assert wire.foreign_keys({**call, "AWS_PROFILE": "other"}, own) == ["AWS_PROFILE"]
    assert wire.foreign_keys({**call, "LC_CTYPE": "de_DE.UTF-8"}, own) == ["LC_CTYPE"]
    assert wire.foreign_keys({k: v for k, v in call.items() if k != "AWS_REGION"}, own) == ["AWS_REGION"]


def test_the_thin_client_agrees_with_the_wire() -> None:
    client = _client()
    assert client.CURL_LIKE_PATH == wire.HF_PATH
    assert client.BUILD_HEADER == wire.BUILD_HEADER
    assert client.EXIT_NO_ANSWER == wire.EXIT_NO_ANSWER
    for call in CALLS:
        assert client.no_answer_reply(call, "timed out") == wire.no_answer_reply(call, "timed out")


@pytest.mark.parametrize("call", CALLS)
def test_the_curl_script_writes_the_no_answer_reply_byte_for_byte(call: str, tmp_path: Path) -> None:
    service = Service(
        build="0" * 20, client=str(CLIENT), tag="0" * 12, curl="/bin/false", env="/bin/true", id="/usr/bin/id"
    )
    script = _sh_curl("/nonexistent/python", call, "mock", service)
    [line] = [line.strip() for line in script.splitlines() if line.strip().startswith("printf '{")]
    done = subprocess.run(["sh", "-c", f"rc=28; {line}"], capture_output=True, check=True)
    assert done.stdout == (dumps(wire.no_answer_reply(call, "curl exit 28")) + "\n").encode()


def test_a_reply_frame_is_the_exit_code_then_stdout() -> None:
    assert wire.frame(2, b'{\n  "a": 1\n}\n') == b'2\n{\n  "a": 1\n}\n'


def _fake(path: Path, text: str) -> str:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("writer_uid", ["same", "other"])
def test_the_curl_script_asks_id_only_when_written_by_another_user(
    writer_uid: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default runtime directory names the uid: the script carries its writer's, so a call
    runs no ``id -u``; a user other than the writer finds no socket of its own there and asks."""
    import os
    import socket

    uid = 4_000_000 + os.getpid() % 100_000  # a uid of no one: its runtime directory is the test's
    runtime = Path(f"/tmp/ohfp-{uid}")
    tag = f"test{os.getpid()}"
    runtime.mkdir(mode=0o700)
    listening = socket.socket(socket.AF_UNIX)
    try:
        listening.bind(str(runtime / f"serve-{tag}.sock"))
        asked = tmp_path / "asked"
        ident = _fake(tmp_path / "id", f"echo id >> {asked}\necho {uid}\n")
        curl = _fake(
            tmp_path / "curl",
            f'while [ $# -gt 0 ]; do [ "$1" = --unix-socket ] && echo "$2" >> {asked}; shift; done\n'
            "cat > /dev/null\nprintf '0\\n{}\\n200'\n",
        )
        service = Service(
            build="0" * 20, client=str(CLIENT), tag=tag, curl=curl, env="/usr/bin/env", id=ident
        )
        monkeypatch.setattr(os, "getuid", lambda: uid if writer_uid == "same" else uid + 1)
        script = tmp_path / "getAvailableTemplates.sh"
        script.write_text(_sh_curl("/nonexistent/python", "getAvailableTemplates", "mock", service))
        script.chmod(0o755)
        monkeypatch.undo()
        request = tmp_path / "in.json"
        request.write_text("{}")
        env = {"PATH": "/usr/bin:/bin", "HF_PROVIDER_NAME": "x"}
        done = subprocess.run([str(script), "-f", str(request)], env=env, capture_output=True, check=False)
        assert (done.returncode, done.stdout) == (0, b"{}\n"), done.stderr
        expected = [str(runtime / f"serve-{tag}.sock")]
        assert asked.read_text().split() == (expected if writer_uid == "same" else ["id", *expected])
    finally:
        listening.close()
        (runtime / f"serve-{tag}.sock").unlink(missing_ok=True)
        runtime.rmdir()


def test_the_thin_client_imports_nothing_slow_to_load() -> None:
    """Its interpreter's start is most of a call's time: no ``socket`` (enum, selectors), no
    ``typing``, no ``json``/``re`` on the way to the service (here: straight on to its own
    process, ``/bin/true`` standing in for the interpreter)."""
    import sys

    arguments = ["getAvailableTemplates", "mock", "0" * 20, "0" * 12, "/bin/true"]
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-X", "importtime", str(CLIENT), *arguments],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.rpartition("|")[2].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "_socket" in imported  # the client itself was imported and timed
    assert imported & {"socket", "typing", "json", "re", "enum", "selectors"} == set()
