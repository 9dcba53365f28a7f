"""fastwan-generate end to end: the tiny model, the real encoder, a file on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from generate_cli.__main__ import main
from generate_cli.arguments import MAX_IMAGE_BYTES


@pytest.fixture(autouse=True)
def _tiny(monkeypatch: pytest.MonkeyPatch, tiny_dir: Path) -> None:
    monkeypatch.setenv("FASTWAN_MODEL", "tiny")
    monkeypatch.setenv("FASTWAN_TINY_DIR", str(tiny_dir))
    monkeypatch.setenv("FASTWAN_WARMUP", "0")


def decode(path: Path) -> tuple[int, int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        return stream.codec_context.width, stream.codec_context.height, frames


def test_text_to_video_writes_the_requested_mp4(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fox.mp4"
    code = main(
        [
            "--prompt",
            "a red fox",
            "--width",
            "288",
            "--height",
            "256",
            "--num-frames",
            "5",
            "--out",
            str(out),
            "--json",
            "--no-progress",
        ]
    )
    assert code == 0
    assert decode(out) == (288, 256, 5)
    printed = capsys.readouterr().out
    result = json.loads(printed[: printed.rindex("}") + 1])
    assert result["status"] == "succeeded" and result["output_url"] == out.as_uri()
    assert result["metrics"]["steps"] == 3 and result["metrics"]["output_size"] == [288, 256]


def test_image_to_video_from_a_local_file(tmp_path: Path) -> None:
    image = tmp_path / "face.png"
    Image.fromarray(np.full((256, 256, 3), 200, dtype=np.uint8)).save(image)
    out = tmp_path / "face-video.mp4"
    code = main(
        [
            "--prompt",
            "a face",
            "--image",
            str(image),
            "--width",
            "256",
            "--height",
            "256",
            "--num-frames",
            "5",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    assert decode(out) == (256, 256, 5)


def test_an_invalid_job_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--prompt", "p", "--width", "2000", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "width must be between 256 and 1280, got 2000" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_a_bad_out_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--prompt", "p", "--out", str(tmp_path / "video.avi")]) == 2
    assert "--out must name a .mp4 file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("a" * 124 + ".mp4", True), ("a" * 125 + ".mp4", False), ("x.y-z_1.mp4", True), ("-x.mp4", False)],
)
def test_the_out_name_is_a_job_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, accepted: bool
) -> None:
    """The file's name (stem and ``.mp4``) is the output name of the job: at most 128 characters."""
    assert main(["--prompt", "p", "--width", "2000", "--out", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert ("--out must name a .mp4 file" not in err) is accepted
    assert ("width must be between 256 and 1280" in err) is accepted


def test_the_real_model_without_a_gpu_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FASTWAN_MODEL", "FastVideo/FastWan2.2-TI2V-5B-Diffusers")
    assert main(["--prompt", "p", "--out", str(tmp_path / "x.mp4")]) == 2
    assert "FASTWAN_MODEL" in capsys.readouterr().err


def test_an_image_that_is_not_a_regular_file_is_refused_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """/dev/zero was read without end (5.8 GiB in 20 s); a FIFO was waited on for ever."""
    fifo = tmp_path / "frame.png"
    os.mkfifo(fifo)
    for image, kind in (("/dev/zero", "a character device"), (str(fifo), "a FIFO")):
        code = main(["--prompt", "p", "--image", image, "--out", str(tmp_path / "x.mp4"), "--no-progress"])

        assert code == 2
        assert (
            f"--image {image!r} cannot be used: it is {kind}, not a regular file" in capsys.readouterr().err
        )
    assert not (tmp_path / "x.mp4").exists()


def test_an_image_larger_than_a_job_may_carry_is_refused_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "huge.png"
    with image.open("wb") as sparse:
        sparse.truncate(MAX_IMAGE_BYTES + 1)

    code = main(["--prompt", "p", "--image", str(image), "--out", str(tmp_path / "x.mp4"), "--no-progress"])

    err = capsys.readouterr().err
    assert code == 2
    assert f"it is larger than {MAX_IMAGE_BYTES} bytes" in err and "loading" not in err


def test_an_out_folder_that_cannot_be_written_is_refused_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was found only after the whole generation, in a message naming an OUTPUT_DIR."""
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")

    code = main(["--prompt", "p", "--out", str(blocked / "x.mp4"), "--no-progress"])

    err = capsys.readouterr().err
    assert code == 2
    assert f"--out {str(blocked / 'x.mp4')!r}: its folder cannot be written" in err
    assert "loading" not in err and "OUTPUT_DIR" not in err


def test_with_json_logs_the_command_writes_only_json_lines(tmp_path: Path, tiny_dir: Path) -> None:
    """transformers wrote ``[transformers] ...`` through a handler of its own at every start."""
    env = {
        **os.environ,
        "FASTWAN_MODEL": "tiny",
        "FASTWAN_TINY_DIR": str(tiny_dir),
        "FASTWAN_WARMUP": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }
    out = tmp_path / "json-1.mp4"
    args = ["--prompt", "a fox", "--width", "256", "--height", "256", "--num-frames", "5", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "generate_cli", *args, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 0, done.stderr[-3000:]
    assert [line for line in lines if not line.startswith("{")] == []
    assert json.loads(done.stdout)["status"] == "succeeded"
