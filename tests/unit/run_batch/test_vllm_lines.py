"""run-batch's output lines validate as vLLM's own ``BatchRequestOutput``."""

from __future__ import annotations

from http import HTTPStatus

import orjson

from llm_stream.batch.error_bodies import error_response
from llm_stream.batch.result_lines import local_output_line
from llm_stream.contracts import ResponseData
from llm_stream.run_batch.vllm_lines import to_vllm_line

CHAT_BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "tiny",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def _batch_request_output() -> type:
    """vLLM's own model of a run-batch output line (imported, no engine started)."""
    from vllm.entrypoints.launchers.run_batch import BatchRequestOutput

    return BatchRequestOutput  # type: ignore[no-any-return]


def test_a_failed_line_moves_its_error_out_of_the_body_as_vllm_writes_it() -> None:
    openai_line = local_output_line("c1", error_response(HTTPStatus.NOT_FOUND, "no such model"))
    line = orjson.loads(to_vllm_line(openai_line))
    assert line["response"]["status_code"] == 404
    assert line["response"]["body"] is None
    assert line["error"]["error"]["message"] == "no such model"
    _batch_request_output().model_validate(line)


def test_a_successful_chat_line_is_unchanged_and_validates() -> None:
    response = ResponseData(status_code=200, request_id="r1", body=CHAT_BODY)
    openai_line = local_output_line("c2", response)
    assert orjson.loads(to_vllm_line(openai_line)) == orjson.loads(openai_line)
    _batch_request_output().model_validate(orjson.loads(openai_line))


def test_a_line_without_a_custom_id_keeps_its_shape() -> None:
    openai_line = local_output_line(None, error_response(HTTPStatus.BAD_REQUEST, "not JSON"))
    line = orjson.loads(to_vllm_line(openai_line))
    assert line["custom_id"] == ""
    assert line["response"] == {**line["response"], "status_code": 400, "body": None}
    _batch_request_output().model_validate(line)
