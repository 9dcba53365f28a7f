"""What a failed Hugging Face download means: wait and try again, or tell the operator.

A download fails for two kinds of reasons, and the worker must react to each differently:

- it passes: no connection, a timeout, a dropped connection, HTTP 5xx, 408 or 429. The
  settings are right; the download is retried for a while, and then the worker exits to be
  started again (buffer mode: exit 1, the supervisor restarts it);
- it stays: no such repository, revision or file, a gated or private repository without a
  token that opens it, other HTTP 4xx, downloads off (``HF_HUB_OFFLINE=1``) and the files not
  cached, a full disk, a cache that cannot be written. Retrying changes nothing, so it is a
  configuration error (buffer mode: exit 2, the container stops with the reason).

huggingface_hub hides some of these behind ``LocalEntryNotFoundError`` ("not in the cache"):
it raises that both when downloads are off and when the Hub could not be reached, with the
network error as its cause. The cause tells them apart, and ``offline`` says which applies.
"""

from __future__ import annotations

import errno
from typing import Final

import attrs

__all__ = ["HubFailure", "classify_hub_failure"]

_FULL: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
_NOT_WRITABLE: Final = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_PASSING_STATUS: Final = frozenset({408, 429})


@attrs.frozen
class HubFailure:
    """``reason`` completes "could not be had: ..."; ``transient``: a retry may succeed."""

    transient: bool
    reason: str


def classify_hub_failure(error: BaseException, *, offline: bool) -> HubFailure | None:
    """The meaning of ``error`` raised by a download, or None when it is none of the known kinds.

    ``offline``: downloads were off (``HF_HUB_OFFLINE``), so "not in the cache" is final.
    """
    from huggingface_hub import errors

    if isinstance(error, errors.LocalEntryNotFoundError):
        return _not_cached(error, offline=offline)
    lasting = (
        # Most specific first: GatedRepoError is a RepositoryNotFoundError, and all but the
        # last are HfHubHTTPErrors.
        (errors.GatedRepoError, "the repository is gated and no token (HF_TOKEN) gives access to it"),
        (
            errors.RepositoryNotFoundError,
            "no such repository on the Hub (or a private or gated one no token gives access to)",
        ),
        (errors.DisabledRepoError, "the repository is disabled on the Hub"),
        (errors.RevisionNotFoundError, "the repository has no such revision"),
        (errors.EntryNotFoundError, "the repository has no such file"),
        (errors.FileMetadataError, "the endpoint does not answer as a Hugging Face Hub (see HF_ENDPOINT)"),
    )
    for kind, reason in lasting:
        if isinstance(error, kind):
            return HubFailure(False, reason)
    if isinstance(error, errors.HfHubHTTPError):
        return _http_failure(error.response.status_code)
    return _other_failure(error)


def _not_cached(error: BaseException, *, offline: bool) -> HubFailure:
    """huggingface_hub's "not in the cache": final offline, else whatever kept the Hub away."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    cause = error.__cause__
    if offline or isinstance(cause, OfflineModeIsEnabled):
        return HubFailure(
            False,
            "it is not in the cache and downloads are off (HF_HUB_OFFLINE=1): download it once with "
            "network access, or set HF_HOME to a cache that holds it",
        )
    if cause is not None and (known := classify_hub_failure(cause, offline=offline)) is not None:
        return known
    return HubFailure(True, "the Hub could not be reached and the files are not in the cache")


def _other_failure(error: BaseException) -> HubFailure | None:
    if isinstance(error, _transport_errors()):
        return HubFailure(True, f"the connection to the Hub failed ({type(error).__name__})")
    if isinstance(error, OSError):
        return _disk_failure(error)
    if isinstance(error, ValueError):
        return HubFailure(False, f"huggingface_hub refused the request ({_first_line(error)})")
    return None


def _http_failure(status: int) -> HubFailure:
    if status >= 500 or status in _PASSING_STATUS:
        return HubFailure(True, f"the Hub answered HTTP {status}")
    if status in (401, 403):
        return HubFailure(False, f"the Hub refused access (HTTP {status}): check HF_TOKEN")
    return HubFailure(False, f"the Hub answered HTTP {status}")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection, timeout and protocol errors of the HTTP client huggingface_hub uses (its own
    ``utils.httpx``: httpx2 from huggingface_hub 2.0 on, httpx in 1.x)."""
    from huggingface_hub.utils import httpx  # type: ignore[attr-defined]  # not re-exported for mypy

    return (ConnectionError, TimeoutError, httpx.TransportError)


def _disk_failure(error: OSError) -> HubFailure:
    if error.errno in _FULL:
        return HubFailure(False, "the disk is full (no space left for the download)")
    if error.errno in _NOT_WRITABLE:
        return HubFailure(False, f"the cache cannot be written ({error.strerror or type(error).__name__})")
    # A size mismatch after a cut-off transfer ("Consistency check failed"), an I/O hiccup:
    # nothing says it will happen again.
    return HubFailure(True, f"the download broke off ({type(error).__name__}: {_first_line(error)})")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."
