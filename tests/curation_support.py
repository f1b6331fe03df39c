"""A finished chat batch written straight into a file store, as the gateway and the aggregator
leave one: the input upload linked, output and error files, the batch object last."""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from llm_stream.files.records import new_upload_id
from llm_stream.files.store import BatchFile, FileStore

CHAT = "/v1/chat/completions"


def custom_id(number: int) -> str:
    return f"line-{number:06d}"


def request_line(number: int) -> bytes:
    body = {
        "model": "tiny-llama",
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": f"Question number {number}: what is {number} + 1?"},
        ],
    }
    line = {"custom_id": custom_id(number), "method": "POST", "url": CHAT, "body": body}
    return orjson.dumps(line) + b"\n"


def output_line(number: int) -> bytes:
    body = {
        "id": f"chatcmpl-{number}",
        "object": "chat.completion",
        "model": "tiny-llama",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"It is {number + 1}."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }
    line = {
        "id": f"batch_req_{number}",
        "custom_id": custom_id(number),
        "response": {"status_code": 200, "request_id": f"r{number}", "body": body},
        "error": None,
    }
    return orjson.dumps(line) + b"\n"


def error_line(number: int) -> bytes:
    line = {
        "id": f"batch_req_{number}",
        "custom_id": custom_id(number),
        "response": None,
        "error": {"code": "invalid_request", "message": "too long"},
    }
    return orjson.dumps(line) + b"\n"


def write_batch(store: FileStore, batch_id: str, lines: int, *, errors: int = 0) -> str:
    """``lines`` answered lines then ``errors`` error lines; the upload's id."""
    total = lines + errors
    upload = new_upload_id()
    store.write_upload(
        upload,
        (request_line(n) for n in range(total)),
        filename="requests.jsonl",
        created_at=1_700_000_000,
    )
    store.link_input(batch_id, upload)
    store.write(batch_id, BatchFile.OUTPUT, _reversed_outputs(lines))
    store.write(batch_id, BatchFile.ERROR, (error_line(n) for n in range(lines, total)))
    store.write(batch_id, BatchFile.BATCH, [b"{}\n"])
    return upload


def _reversed_outputs(lines: int) -> Iterator[bytes]:
    """Answers come in another order than the requests, as workers finish them."""
    return (output_line(n) for n in reversed(range(lines)))
