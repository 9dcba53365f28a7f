"""The production result store: Backblaze B2, through b2sdk.

What b2sdk already does, and this module relies on rather than repeats: it keeps the account
token and re-authorises with the stored key when B2 answers ``expired_auth_token``; it fetches,
caches and renews upload URLs; it retries one upload up to five times on a fresh upload URL
(B2's advice for 503s and dropped connections); it retries other calls with backoff. What it
does not do is wait between those upload attempts, so an outage of a few seconds fails all
five at once: ``put`` wraps the upload in the stores' short, bounded retry with backoff
(``storage.retry``).

Secrets: the application key only ever goes to ``authorize_account``; messages name the
environment variables, never their values, and describe b2sdk errors by type and B2 code.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Final

import attrs
from b2sdk.v2 import B2Api, Bucket, InMemoryAccountInfo, InMemoryCache, UploadSourceBytes
from b2sdk.v2.exception import (
    B2Error,
    MaxRetriesExceeded,
    NonExistentBucket,
    RestrictedBucket,
    Unauthorized,
)

from fastwan_adapters.config import ConfigError, env_str
from fastwan_adapters.storage.names import checked_name
from fastwan_adapters.storage.retry import UploadRetry
from fastwan_core import EncodedVideo, ErrorCode, JobFailure

__all__ = ["DEFAULT_PREFIX", "B2ResultStore", "B2Settings", "B2Unreachable"]

log = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "avatar/outputs"
_CREDENTIALS: Final = ("B2_KEY_ID", "B2_APP_KEY", "B2_BUCKET_NAME")
_REALM: Final = "production"
# B2's rules for file info: at most 10 keys, names of letters, digits, '-' and '_' up to 50
# characters; names starting with 'b2-' are reserved for B2's own headers.
_MAX_FILE_INFO: Final = 10
_FILE_INFO_KEY: Final = re.compile(r"[A-Za-z0-9_-]{1,50}")
_B2_STATUS: Final = re.compile(r"\d{3} [a-z_]+")


class B2Unreachable(RuntimeError):
    """B2 could not be reached at start-up (network or service outage), after b2sdk's retries.

    Not a :class:`ConfigError`: the settings may be right, so the host should restart the
    worker later rather than ask for new ones.
    """


def normalize_prefix(prefix: str) -> str:
    """``"/avatar//outputs/"`` -> ``"avatar/outputs"``: no empty segments, no edge slashes."""
    return "/".join(segment for segment in prefix.split("/") if segment)


@attrs.frozen(kw_only=True)
class B2Settings:
    """Where and as whom to upload.

    Attributes:
        key_id, app_key: the application key; never shown in ``repr``.
        bucket_name: ``B2_BUCKET_NAME``.
        prefix: ``B2_PREFIX`` without edge slashes; outputs go to ``{prefix}/{name}``
            (or ``{name}`` when empty).
    """

    key_id: str = attrs.field(repr=False)
    app_key: str = attrs.field(repr=False)
    bucket_name: str
    prefix: str = attrs.field(default=DEFAULT_PREFIX, converter=normalize_prefix)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> B2Settings | None:
        """None when no B2 credential variable is set (the local store is used instead).

        Raises:
            ConfigError: some but not all of ``B2_KEY_ID``, ``B2_APP_KEY``,
                ``B2_BUCKET_NAME`` are set; a half-configured worker would silently write to
                local disk instead of B2.
        """
        values = {name: env_str(env, name) for name in _CREDENTIALS}
        missing = [name for name, value in values.items() if value is None]
        if len(missing) == len(_CREDENTIALS):
            return None
        if missing:
            given = ", ".join(name for name in _CREDENTIALS if name not in missing)
            raise ConfigError(
                f"{', '.join(missing)} must be set when {given} is set: set all of "
                f"{', '.join(_CREDENTIALS)} to upload to B2, or none of them to write to OUTPUT_DIR"
            )
        prefix = env_str(env, "B2_PREFIX", DEFAULT_PREFIX)
        return cls(
            key_id=values["B2_KEY_ID"] or "",
            app_key=values["B2_APP_KEY"] or "",
            bucket_name=values["B2_BUCKET_NAME"] or "",
            prefix=DEFAULT_PREFIX if prefix is None else prefix,
        )

    def object_name(self, name: str) -> str:
        """The B2 file name for an output called ``name``."""
        return f"{self.prefix}/{name}" if self.prefix else name


@attrs.frozen
class B2ResultStore:
    """Uploads each video to ``{prefix}/{name}`` and returns its download URL by name.

    Build it with :meth:`connect`, which checks the credentials and the bucket once at
    start-up; the b2sdk ``B2Api`` it holds keeps the authorisation alive from then on.
    """

    api: B2Api = attrs.field(repr=False)
    bucket: Bucket = attrs.field(repr=lambda bucket: repr(bucket.name))
    settings: B2Settings
    retry: UploadRetry = attrs.field(factory=UploadRetry)

    @classmethod
    def connect(
        cls, settings: B2Settings, *, api: B2Api | None = None, retry: UploadRetry | None = None
    ) -> B2ResultStore:
        """Authorise, find the bucket, check the key may write there.

        Args:
            api: a ``B2Api`` to use (tests pass one built on b2sdk's ``RawSimulator``);
                by default a new one with in-memory account info, so nothing is written to
                ``~/.b2_account_info``.

        Raises:
            ConfigError: the key is rejected, lacks ``writeFiles``, is restricted to another
                bucket or name prefix, or the bucket does not exist; the message names the
                variable to fix.
            B2Unreachable: B2 could not be reached.
        """
        if api is None:
            api = B2Api(InMemoryAccountInfo(), cache=InMemoryCache())
        try:
            api.authorize_account(_REALM, settings.key_id, settings.app_key)
        except Unauthorized:
            raise ConfigError(
                "B2 rejected the application key: check that B2_KEY_ID names an existing key "
                "and B2_APP_KEY is its secret"
            ) from None
        except B2Error as exc:
            raise B2Unreachable(f"could not authorise with B2 as B2_KEY_ID: {_describe(exc)}") from exc
        _check_key_allows(api, settings)
        try:
            bucket = api.get_bucket_by_name(settings.bucket_name)
        except NonExistentBucket:
            raise ConfigError(
                f"B2_BUCKET_NAME {settings.bucket_name!r} does not exist or is not visible to B2_KEY_ID"
            ) from None
        except RestrictedBucket:
            raise ConfigError(
                f"B2_KEY_ID is restricted to another bucket than B2_BUCKET_NAME {settings.bucket_name!r}"
            ) from None
        except Unauthorized:
            raise ConfigError(
                f"B2_KEY_ID may not list buckets, so B2_BUCKET_NAME {settings.bucket_name!r} cannot be found"
            ) from None
        except B2Error as exc:
            raise B2Unreachable(f"could not look up B2_BUCKET_NAME in B2: {_describe(exc)}") from exc
        if getattr(bucket, "type_", None) == "allPrivate":
            log.warning(
                "B2 bucket %r is private: output URLs will need an authorisation to download",
                settings.bucket_name,
            )
        log.info("B2 result store ready: bucket %r, prefix %r", settings.bucket_name, settings.prefix)
        return cls(api, bucket, settings, retry or UploadRetry())

    def put(self, name: str, video: EncodedVideo, metadata: Mapping[str, str]) -> str:
        object_name = self.settings.object_name(checked_name(name))
        file_info = _file_info(metadata)
        # B2 checks the data against this SHA-1 and refuses the upload on a mismatch; the
        # large-file path (over B2's recommended part size, ~100 MB) records it as file info.
        source = UploadSourceBytes(video.data, content_sha1=video.sha1)
        try:
            self.retry.run(
                lambda: self.bucket.upload(
                    source,
                    object_name,
                    content_type=video.content_type,
                    file_info=file_info,
                    large_file_sha1=video.sha1,
                ),
                transient=_is_transient,
                what=f"the upload of {object_name}",
            )
        except B2Error as exc:
            raise JobFailure(
                ErrorCode.UPLOAD_FAILED,
                f"upload of {object_name} to B2 bucket {self.settings.bucket_name!r} failed: "
                f"{_describe(exc)}",
            ) from exc
        return self.url_for(name)

    def url_for(self, name: str) -> str:
        """The public download URL of ``name``: the account's download host, name URL-quoted."""
        download_url: str = self.api.get_download_url_for_file_name(
            self.settings.bucket_name, self.settings.object_name(name)
        )
        return download_url


def _check_key_allows(api: B2Api, settings: B2Settings) -> None:
    """Fail at start-up, not on the first job, when the key cannot write where it must."""
    allowed = api.account_info.get_allowed() or {}
    if "writeFiles" not in (allowed.get("capabilities") or ()):
        raise ConfigError("B2_KEY_ID lacks the writeFiles capability: uploads would be refused")
    name_prefix = allowed.get("namePrefix")
    if name_prefix and not settings.object_name("x").startswith(name_prefix):
        raise ConfigError(
            f"B2_KEY_ID may only write names starting with {name_prefix!r}, "
            f"but B2_PREFIX is {settings.prefix!r}"
        )


def _file_info(metadata: Mapping[str, str]) -> dict[str, str]:
    problems = [
        f"file info key {key!r} must be 1 to 50 letters, digits, '-' or '_', not starting with 'b2-'"
        for key in metadata
        if not _FILE_INFO_KEY.fullmatch(key) or key.lower().startswith("b2-")
    ]
    if len(metadata) > _MAX_FILE_INFO:
        problems.append(f"B2 allows at most {_MAX_FILE_INFO} file info keys, got {len(metadata)}")
    if problems:
        raise JobFailure(ErrorCode.UPLOAD_FAILED, "; ".join(problems), retryable=False)
    return {key: str(value) for key, value in metadata.items()}


def _is_transient(exc: BaseException) -> bool:
    """Errors that waiting may cure: connection trouble, timeouts, 5xx, 429.

    An authorisation error is not among them even though b2sdk retries it once on a fresh
    upload URL: if that did not help, waiting will not either.
    """
    if isinstance(exc, MaxRetriesExceeded):
        return bool(exc.exception_info_list) and _is_transient(exc.exception_info_list[-1])
    if not isinstance(exc, B2Error):
        return False
    return bool(exc.should_retry_http() or (exc.should_retry_upload() and not isinstance(exc, Unauthorized)))


def _describe(exc: BaseException) -> str:
    """A safe one-liner: the error's type and B2's status and code, never URLs or headers."""
    if isinstance(exc, MaxRetriesExceeded) and exc.exception_info_list:
        return f"{_describe(exc.exception_info_list[-1])} (after {exc.limit} tries)"
    status = _B2_STATUS.match(str(exc))
    code = getattr(exc, "code", None)
    detail = status.group(0) if status else code if isinstance(code, str) and code else None
    return f"{type(exc).__name__} ({detail})" if detail else type(exc).__name__
