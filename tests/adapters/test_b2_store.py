"""B2ResultStore against b2sdk's own simulator of the B2 service (``RawSimulator``).

The simulator checks what real B2 checks (SHA-1, auth tokens, key capabilities and
restrictions), keeps what is uploaded, and lets a test inject upload errors and expire tokens.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import attrs
import pytest
from b2sdk.v2 import B2Api, B2HttpApiConfig, Bucket, InMemoryAccountInfo, InMemoryCache
from b2sdk.v2.exception import ServiceError, Unauthorized

from fastwan_adapters.config import ConfigError
from fastwan_adapters.storage import B2ResultStore, B2Settings, UploadRetry
from fastwan_adapters.testing.b2_double import ProductionLikeSimulator
from fastwan_core import EncodedVideo, ErrorCode, JobFailure, Size

BUCKET = "talking-avatar"
METADATA = {"job_id": "job-1", "seed": "42", "model": "FastVideo/FastWan2.2-TI2V-5B-Diffusers"}
NO_WAIT = UploadRetry(attempts=3, wait_initial_s=0.0, wait_max_s=0.0, wait_jitter_s=0.0)
B2SDK_ATTEMPTS = 5  # b2sdk's UploadManager.MAX_UPLOAD_ATTEMPTS


@attrs.frozen
class Account:
    api: B2Api
    raw: ProductionLikeSimulator
    key_id: str
    app_key: str
    bucket: Bucket

    def settings(self, **changes: Any) -> B2Settings:
        fields: dict[str, Any] = {"key_id": self.key_id, "app_key": self.app_key, "bucket_name": BUCKET}
        return B2Settings(**(fields | changes))

    def connect(self, **changes: Any) -> B2ResultStore:
        return B2ResultStore.connect(self.settings(**changes), api=self.api, retry=NO_WAIT)

    def stored(self, object_name: str) -> tuple[Any, bytes]:
        """What B2 holds under ``object_name``: its latest version's info, and its bytes."""
        info = self.bucket.get_file_info_by_name(object_name)
        buffer = io.BytesIO()
        self.bucket.download_file_by_name(object_name).save(buffer)
        return info, buffer.getvalue()


@pytest.fixture
def account() -> Account:
    api = B2Api(
        InMemoryAccountInfo(),
        InMemoryCache(),
        api_config=B2HttpApiConfig(_raw_api_class=ProductionLikeSimulator),
    )
    raw = api.session.raw_api
    key_id, app_key = raw.create_account()
    api.authorize_account("production", key_id, app_key)
    bucket = api.create_bucket(BUCKET, "allPublic")
    return Account(api, raw, key_id, app_key, bucket)


def video(data: bytes = b"\x00\x00\x00\x18ftypmp42 fake mp4 body" * 40) -> EncodedVideo:
    return EncodedVideo(data, Size(720, 1280))


def test_put_uploads_under_the_prefix_with_type_sha1_and_file_info(account: Account) -> None:
    clip = video()
    url = account.connect().put("job-1.mp4", clip, METADATA)

    assert url == f"https://f005.backblazeb2.com/file/{BUCKET}/avatar/outputs/job-1.mp4"
    info, data = account.stored("avatar/outputs/job-1.mp4")
    assert data == clip.data
    assert info.content_type == "video/mp4"
    assert info.content_sha1 == hashlib.sha1(clip.data).hexdigest()
    assert info.file_info == METADATA
    assert info.size == len(clip.data)


def test_b2_refuses_data_that_does_not_match_the_sha1_sent(account: Account) -> None:
    @attrs.frozen
    class CorruptedOnTheWay(EncodedVideo):
        @property
        def sha1(self) -> str:
            return hashlib.sha1(b"what the encoder wrote").hexdigest()

    store = account.connect()
    with pytest.raises(JobFailure) as caught:
        store.put("job-1.mp4", CorruptedOnTheWay(b"what arrived", Size(720, 1280)), METADATA)

    assert caught.value.code is ErrorCode.UPLOAD_FAILED
    assert "FileSha1Mismatch" in caught.value.message
    assert list(account.bucket.ls("avatar/outputs", recursive=True)) == []


def test_url_uses_the_account_download_host_and_quotes_the_name(account: Account) -> None:
    url = account.connect(prefix="/clips//2025/").put("a b+c%.mp4", video(), METADATA)

    assert url == f"https://f005.backblazeb2.com/file/{BUCKET}/clips/2025/a%20b%2Bc%25.mp4"
    assert account.stored("clips/2025/a b+c%.mp4")[1] == video().data


def test_an_empty_prefix_puts_outputs_at_the_bucket_root(account: Account) -> None:
    url = account.connect(prefix="/").put("job-1.mp4", video(), METADATA)

    assert url == f"https://f005.backblazeb2.com/file/{BUCKET}/job-1.mp4"
    assert account.stored("job-1.mp4")[1] == video().data


def test_uploading_the_same_job_again_replaces_what_the_name_serves(account: Account) -> None:
    store = account.connect()
    first = store.put("job-1.mp4", video(b"first take" * 50), METADATA)
    second = store.put("job-1.mp4", video(b"second take" * 50), METADATA)

    assert first == second
    info, data = account.stored("avatar/outputs/job-1.mp4")
    assert data == b"second take" * 50
    assert info.content_sha1 == hashlib.sha1(b"second take" * 50).hexdigest()


def test_transient_errors_within_b2sdk_attempts_are_retried_to_success(account: Account) -> None:
    store = account.connect()
    account.raw.set_upload_errors([ServiceError("503 service_unavailable busy")] * 2)

    url = store.put("job-1.mp4", video(), METADATA)

    assert url.endswith("/avatar/outputs/job-1.mp4")
    assert account.stored("avatar/outputs/job-1.mp4")[1] == video().data


def test_an_outage_longer_than_b2sdk_attempts_is_retried_after_a_pause(account: Account) -> None:
    store = account.connect()
    account.raw.set_upload_errors([ServiceError("503 service_unavailable busy")] * (B2SDK_ATTEMPTS + 2))

    store.put("job-1.mp4", video(), METADATA)

    assert account.stored("avatar/outputs/job-1.mp4")[1] == video().data
    assert account.raw.upload_errors == []


def test_persistent_errors_end_in_a_retryable_upload_failed_without_secrets(account: Account) -> None:
    store = account.connect()
    account.raw.set_upload_errors(
        [ServiceError("503 service_unavailable busy")] * (B2SDK_ATTEMPTS * NO_WAIT.attempts + 1)
    )

    with pytest.raises(JobFailure) as caught:
        store.put("job-1.mp4", video(), METADATA)

    failure = caught.value
    assert failure.code is ErrorCode.UPLOAD_FAILED
    assert failure.retryable is True
    assert "avatar/outputs/job-1.mp4" in failure.message
    assert "ServiceError (503 service_unavailable)" in failure.message
    assert account.app_key not in failure.message
    assert "auth_token" not in failure.message
    assert len(account.raw.upload_errors) == 1  # exactly our 3 x b2sdk's 5 attempts were made
    assert list(account.bucket.ls("avatar/outputs", recursive=True)) == []


def test_an_authorisation_error_is_not_retried_beyond_b2sdk(account: Account) -> None:
    store = account.connect()
    account.raw.set_upload_errors([Unauthorized("", "unauthorized")] * (B2SDK_ATTEMPTS + 1))

    with pytest.raises(JobFailure) as caught:
        store.put("job-1.mp4", video(), METADATA)

    assert caught.value.code is ErrorCode.UPLOAD_FAILED
    assert "Unauthorized (unauthorized)" in caught.value.message
    assert len(account.raw.upload_errors) == 1


def test_an_expired_account_token_is_renewed_transparently(account: Account) -> None:
    store = account.connect()
    expired = account.api.account_info.get_account_auth_token()
    account.raw.expire_auth_token(expired)

    url = store.put("job-1.mp4", video(), METADATA)

    assert url.endswith("/avatar/outputs/job-1.mp4")
    assert account.api.account_info.get_account_auth_token() != expired
    assert account.stored("avatar/outputs/job-1.mp4")[1] == video().data


def test_a_bad_name_is_refused_before_anything_is_sent(account: Account) -> None:
    store = account.connect()
    with pytest.raises(JobFailure) as caught:
        store.put("../escape.mp4", video(), METADATA)

    assert caught.value.code is ErrorCode.UPLOAD_FAILED
    assert caught.value.retryable is False
    assert list(account.bucket.ls(recursive=True)) == []


def test_metadata_keys_b2_would_refuse_fail_clearly(account: Account) -> None:
    with pytest.raises(JobFailure) as caught:
        account.connect().put("job-1.mp4", video(), {"job id": "x"})

    assert "'job id'" in caught.value.message
    assert caught.value.retryable is False


# --- start-up checks ------------------------------------------------------------------------


def test_a_wrong_app_key_is_a_config_error_naming_the_variables(account: Account) -> None:
    with pytest.raises(ConfigError) as caught:
        account.connect(app_key="not-the-secret")

    assert "B2_APP_KEY" in str(caught.value)
    assert "B2_KEY_ID" in str(caught.value)
    assert "not-the-secret" not in str(caught.value)


def test_an_unknown_key_id_is_a_config_error(account: Account) -> None:
    with pytest.raises(ConfigError, match="B2_KEY_ID"):
        account.connect(key_id="no-such-key")


def test_a_missing_bucket_is_a_config_error_naming_it(account: Account) -> None:
    with pytest.raises(ConfigError, match="B2_BUCKET_NAME 'no-such-bucket' does not exist"):
        account.connect(bucket_name="no-such-bucket")


def test_a_key_that_cannot_write_is_refused_at_start_up(account: Account) -> None:
    key = account.api.create_key(["listBuckets", "readFiles"], "read-only")

    with pytest.raises(ConfigError, match="B2_KEY_ID lacks the writeFiles capability"):
        account.connect(key_id=key.id_, app_key=key.application_key)


def test_a_key_for_another_bucket_is_refused_at_start_up(account: Account) -> None:
    other = account.api.create_bucket("other-bucket", "allPublic")
    key = account.api.create_key(["listBuckets", "writeFiles"], "other-only", bucket_id=other.id_)

    with pytest.raises(ConfigError, match="B2_BUCKET_NAME"):
        account.connect(key_id=key.id_, app_key=key.application_key)


def test_a_key_limited_to_another_prefix_is_refused_at_start_up(account: Account) -> None:
    key = account.api.create_key(
        ["listBuckets", "writeFiles"], "prefixed", bucket_id=account.bucket.id_, name_prefix="other/"
    )

    with pytest.raises(ConfigError, match="B2_PREFIX"):
        account.connect(key_id=key.id_, app_key=key.application_key)


def test_a_prefix_restricted_key_that_fits_uploads(account: Account) -> None:
    # Not bucket-restricted too: the simulator's get_upload_url ignores the bucket, so it
    # refuses every bucket-restricted key (real B2 accepts them).
    key = account.api.create_key(["listBuckets", "writeFiles"], "worker", name_prefix="avatar/")
    store = account.connect(key_id=key.id_, app_key=key.application_key)

    assert store.put("job-1.mp4", video(), METADATA).endswith("/avatar/outputs/job-1.mp4")


# --- settings -------------------------------------------------------------------------------


def test_settings_are_none_when_no_b2_variable_is_set() -> None:
    assert B2Settings.from_env({"B2_PREFIX": "x", "OUTPUT_DIR": "/tmp"}) is None
    assert B2Settings.from_env({"B2_KEY_ID": "  ", "B2_APP_KEY": ""}) is None


def test_settings_name_the_missing_variables_when_some_are_set() -> None:
    with pytest.raises(ConfigError) as caught:
        B2Settings.from_env({"B2_KEY_ID": "kid", "B2_APP_KEY": "secret-value"})

    message = str(caught.value)
    assert message.startswith("B2_BUCKET_NAME must be set when B2_KEY_ID, B2_APP_KEY is set")
    assert "secret-value" not in message


def test_settings_read_all_variables_and_hide_the_secrets_from_repr() -> None:
    env = {"B2_KEY_ID": "kid-123", "B2_APP_KEY": "secret-value", "B2_BUCKET_NAME": "talking-avatar"}

    default = B2Settings.from_env(env)
    custom = B2Settings.from_env(env | {"B2_PREFIX": "/renders/v2/"})

    assert default == B2Settings(key_id="kid-123", app_key="secret-value", bucket_name="talking-avatar")
    assert default is not None and default.object_name("j.mp4") == "avatar/outputs/j.mp4"
    assert custom is not None and custom.object_name("j.mp4") == "renders/v2/j.mp4"
    assert "secret-value" not in repr(default)
    assert "kid-123" not in repr(default)
