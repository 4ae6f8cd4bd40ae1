"""Credential values the process holds are masked wherever ohfp writes text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ohfp_core import masking
from ohfp_core.converter import dumps
from ohfp_core.errors import CloudError
from tests.core.conftest import run

TOKEN = "FwoGZXIvYXdzEBAaDNotARealSessionToken0123456789"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(autouse=True)
def fresh_memory() -> Iterator[None]:
    masking.forget_secrets()
    yield
    masking.forget_secrets()


def test_remembered_values_are_masked_in_any_text() -> None:
    masking.remember_secret(TOKEN, None, "short")
    text = f"AuthFailure: the security token {TOKEN} is invalid; token={TOKEN[:10]}"
    assert masking.mask_secrets(text) == f"AuthFailure: the security token *** is invalid; token={TOKEN[:10]}"
    plain = "short is too short to be remembered"
    assert masking.mask_secrets(plain) == plain


def test_a_secret_containing_another_is_masked_whole() -> None:
    masking.remember_secret(TOKEN[:12], TOKEN)
    assert masking.mask_secrets(f"<{TOKEN}>") == "<***>"


def test_credentials_in_the_environment_are_masked_without_registration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    masking.forget_secrets()
    assert SECRET not in str(CloudError(f"SignatureDoesNotMatch: {SECRET}"))
    assert TOKEN not in dumps({"message": f"echoed {TOKEN}", "errors": [TOKEN]})


def test_a_credential_echoed_into_an_error_never_reaches_the_reply_or_the_log(
    hf_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply quotes the bad setting (here the session token pasted as a backend name):
    the value is masked in the reply and in the log line."""
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    masking.forget_secrets()
    (hf_env / "conf" / "ohfp.json").write_text(json.dumps({"storage": TOKEN}))
    code, reply = run(capsys, hf_env, "getRequestStatus", {"requests": []})
    assert code == 3 and "***" in reply["message"]
    assert TOKEN not in json.dumps(reply)
    log = (hf_env / "log" / "ohfp-mockinst.log").read_text()
    assert "***" in log and TOKEN not in log
