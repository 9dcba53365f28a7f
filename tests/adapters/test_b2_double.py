"""The B2 double: the production store, over HTTP, against b2sdk's simulator, in this process and
in a child process that only has the double's environment."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import pytest

from fastwan_adapters.config import ConfigError
from fastwan_adapters.storage import B2ResultStore, B2Settings, UploadRetry
from fastwan_adapters.testing import B2Call, B2Double, Fault
from fastwan_core import EncodedVideo, ErrorCode, JobFailure, Size

METADATA = {"job_id": "job-1", "seed": "42", "model": "tiny"}
NO_WAIT = UploadRetry(attempts=3, wait_initial_s=0.0, wait_max_s=0.0, wait_jitter_s=0.0)
CLIP = EncodedVideo(b"\x00\x00\x00\x18ftypmp42 not really a video" * 50, Size(256, 256))


@pytest.fixture
def b2() -> Iterator[B2Double]:
    with B2Double() as double, double.realm():
        yield double


def settings(b2: B2Double, **changes: str) -> B2Settings:
    return B2Settings(
        **{"key_id": b2.key_id, "app_key": b2.app_key, "bucket_name": b2.bucket_name, **changes}
    )


def test_the_production_store_uploads_through_the_double_into_the_simulators_bucket(b2):
    store = B2ResultStore.connect(settings(b2), retry=NO_WAIT)

    url = store.put("job-1.mp4", CLIP, METADATA)

    assert url == f"https://f005.backblazeb2.com/file/{b2.bucket_name}/avatar/outputs/job-1.mp4"
    assert b2.object_name_of(url) == "avatar/outputs/job-1.mp4"
    assert b2.objects() == {"avatar/outputs/job-1.mp4": CLIP.data}
    assert b2.uploads == [("avatar/outputs/job-1.mp4", 200)]
    store.put("job-1.mp4", EncodedVideo(b"second run" * 10, Size(256, 256)), METADATA)
    assert b2.read("avatar/outputs/job-1.mp4") == b"second run" * 10  # the same name, overwritten
    assert b2.read("avatar/outputs/missing.mp4") is None


def test_a_wrong_key_is_refused_as_b2_refuses_it(b2):
    with pytest.raises(ConfigError, match="B2 rejected the application key"):
        B2ResultStore.connect(settings(b2, app_key="not-the-key"), retry=NO_WAIT)


def test_a_burst_of_503s_and_a_dropped_upload_are_retried_by_b2sdk_and_the_store(b2):
    store = B2ResultStore.connect(settings(b2), retry=NO_WAIT)
    b2.fail_next(B2Call.UPLOAD, Fault.answer(503), times=3)
    b2.fail_next(B2Call.UPLOAD, Fault.dropped())

    store.put("job-2.mp4", CLIP, METADATA)

    assert [status for _, status in b2.uploads] == [503, 503, 503, None, 200]
    assert b2.read("avatar/outputs/job-2.mp4") == CLIP.data


def test_uploads_refused_every_time_fail_the_put_retryably(b2):
    store = B2ResultStore.connect(settings(b2), retry=NO_WAIT)
    b2.fail_next(B2Call.UPLOAD, Fault.answer(503), times=1000)

    with pytest.raises(JobFailure) as caught:
        store.put("job-3.mp4", CLIP, METADATA)

    assert caught.value.code is ErrorCode.UPLOAD_FAILED and caught.value.retryable
    assert b2.read("avatar/outputs/job-3.mp4") is None
    assert len(b2.uploads) == 3 * 5  # the store's 3 attempts, each b2sdk's 5
    b2.clear_faults()
    store.put("job-3.mp4", CLIP, METADATA)
    assert b2.read("avatar/outputs/job-3.mp4") == CLIP.data


def test_an_outage_answers_every_call_until_it_is_lifted(b2):
    store = B2ResultStore.connect(settings(b2), retry=NO_WAIT)
    b2.outage()
    lifted = threading.Timer(0.5, b2.outage, args=(None,))
    lifted.start()

    store.put("job-5.mp4", CLIP, METADATA)  # b2sdk's own retries outlast a short outage

    lifted.join()
    assert b2.read("avatar/outputs/job-5.mp4") == CLIP.data


def test_data_that_does_not_match_its_sha1_is_refused_as_b2_refuses_it(b2):
    class Corrupted(EncodedVideo):
        @property
        def sha1(self) -> str:
            return hashlib.sha1(b"what the encoder wrote").hexdigest()

    store = B2ResultStore.connect(settings(b2), retry=NO_WAIT)
    with pytest.raises(JobFailure):
        store.put("job-4.mp4", Corrupted(b"what arrived", Size(256, 256)), METADATA)
    assert b2.objects() == {}


def test_a_child_process_with_only_the_doubles_environment_uploads_to_it():
    script = textwrap.dedent(
        """
        import json, os
        from fastwan_adapters.storage import open_result_store, store_settings_from_env
        from fastwan_core import EncodedVideo, Size
        store = open_result_store(store_settings_from_env(os.environ))
        print(json.dumps(store.put("child.mp4", EncodedVideo(b"from a child", Size(256, 256)), {})))
        """
    )
    with B2Double() as b2:
        env = {**os.environ, **b2.process_env(prefix="chaos")}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        assert (
            json.loads(done.stdout) == f"https://f005.backblazeb2.com/file/{b2.bucket_name}/chaos/child.mp4"
        )
        assert b2.objects() == {"chaos/child.mp4": b"from a child"}
