"""The log set-up both apps share: no secret in any finished line, in either format, tracebacks
and uncaught exceptions included; a traceback shows no local variable's value."""

from __future__ import annotations

import json
import logging
import sys

import pytest
import structlog

from fastwan_adapters.logs import configure_logging, secrets_in

SECRET = 'key-"quoted"\\and-\u00e9-0042'  # a quote, a backslash and a non-ASCII letter: escaped in JSON
KEY_ID = "005keyid0042"
UNLISTED = "a-local-no-list-names-77"


@pytest.fixture(autouse=True)
def _restore_logging(restored_logging: None) -> None:
    """configure_logging sets the process's logging up; put pytest's back afterwards."""


def _fail_with_secrets_in_locals() -> None:
    application_key = SECRET  # what b2sdk's authorize_account holds when B2 cannot be reached
    headers = {"x-internal-api-key": SECRET, "note": UNLISTED}
    raise RuntimeError(f"could not authorise as {KEY_ID} ({len(application_key)}, {len(headers)})")


def test_secrets_in_reads_the_credential_variables_only() -> None:
    env = {"INTERNAL_API_KEY": " api-0042 ", "B2_APP_KEY": "app-0042", "B2_KEY_ID": "", "PATH": "/bin"}
    assert secrets_in(env) == ["api-0042", "app-0042"]
    assert secrets_in({"HF_TOKEN": "hf_0042", "HOME": "/root"}) == ["hf_0042"]


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_traceback_shows_no_local_and_no_secret(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(fmt, "INFO", [SECRET, KEY_ID])
    try:
        _fail_with_secrets_in_locals()
    except RuntimeError:
        logging.getLogger("queue_worker.loader").error("start-up failed", exc_info=True)

    err = capsys.readouterr().err
    assert "start-up failed" in err and "RuntimeError: could not authorise as ***" in err.replace("\\n", "\n")
    assert "Traceback (most recent call last)" in err
    assert UNLISTED not in err  # no local variable's value, listed as a secret or not
    assert KEY_ID not in err
    assert "key-" not in err  # nor any form of the secret: raw, JSON-escaped or repr-escaped


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_the_finished_line_is_scrubbed_nested_values_and_uvicorns_records_too(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt, "INFO", [SECRET])
    structlog.get_logger("fastwan").info("request", headers={"x-internal-api-key": SECRET}, keys=[SECRET])
    try:
        raise ValueError(f"bad header {SECRET!r}")
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")

    lines = capsys.readouterr().err.splitlines()
    text = "\n".join(lines)
    assert "key-" not in text
    assert "Exception in ASGI application" in text and "***" in text
    if fmt == "json":
        events = [json.loads(line) for line in lines if line.startswith("{")]
        assert [event["event"] for event in events] == ["request", "Exception in ASGI application"]
        assert events[0]["headers"] == {"x-internal-api-key": "***"} and events[0]["keys"] == ["***"]


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_an_uncaught_exception_is_a_scrubbed_line_of_the_log(
    fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(fmt, "INFO", [SECRET])
    try:
        raise OSError(f"cannot use {SECRET}")
    except OSError as error:
        sys.excepthook(type(error), error, error.__traceback__)

    err = capsys.readouterr().err
    assert "uncaught exception" in err and "OSError: cannot use ***" in err
    assert "key-" not in err
    if fmt == "json":
        assert json.loads(err.splitlines()[0])["level"] == "critical"
