"""What ``/docs`` shows for ``POST /generate``: the job (from the core) and the answers.

Documentation only: the route reads the raw body and the core validates it (``parse_job``),
so the schema can never reject what the core would accept.
"""

from __future__ import annotations

from typing import Any

from fastwan_core import ErrorCode, job_json_schema

__all__ = ["generate_openapi", "generate_responses"]


def _result_schema() -> dict[str, Any]:
    return {
        "title": "JobResult",
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["succeeded", "failed", "cancelled"]},
            "output_url": {"type": "string", "description": "The video's URL (success only)."},
            "metrics": {"type": "object", "description": "The contract's metrics object."},
            "error": {"type": "string", "description": "Human-readable; never a secret."},
            "error_code": {"type": "string", "enum": [code.value for code in ErrorCode]},
            "retryable": {"type": "boolean", "description": "Whether running the job again can help."},
            # The names the orchestrator parses from its sibling worker (MuseTalk), beside ours.
            "musetalk_job_id": {"type": "string", "description": "The job's id, when it was readable."},
            "error_message": {"type": "string", "description": "Failure only: the same text as `error`."},
            "error_type": {"type": "string", "enum": ["media_error", "processing_error", "unknown_error"]},
            "stage": {
                "type": "string",
                "enum": ["download", "inference", "decode", "encode", "upload", "validation", "unknown"],
                "description": "Failure only: where it failed.",
            },
            "stage_times": {"type": "object", "description": "Failure only: seconds per stage that ran."},
        },
    }


def generate_openapi() -> dict[str, Any]:
    """``openapi_extra`` for the route: the job's JSON Schema as its request body."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": job_json_schema()}},
        }
    }


def generate_responses() -> dict[int | str, dict[str, Any]]:
    """One entry per status code the route answers, each with the result's schema."""
    content = {"application/json": {"schema": _result_schema()}}
    described = {
        200: "The video is stored; `output_url` says where.",
        400: "The job failed and running it again cannot help (e.g. `generation_failed`).",
        408: "The body did not arrive within `BODY_TIMEOUT_S`: Salad sends the job again.",
        413: "The body is larger than 32 MiB (`invalid_input`).",
        415: "The body is not sent as `Content-Type: application/json` (`invalid_input`).",
        422: "The job breaks the contract's rules (`invalid_input`); `error` names the field.",
        424: "The image host or the store refused for good (not retryable).",
        429: "Another job is running: Salad retries later.",
        499: "The caller disconnected and the job was cancelled (nobody receives this).",
        500: "A retryable failure (`image_fetch_failed`, `upload_failed`, `internal_error`).",
        503: "Not ready yet, shutting down (`worker_shutdown`), or out of GPU memory: retryable.",
    }
    return {status: {"description": text, "content": content} for status, text in described.items()}
