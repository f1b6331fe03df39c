from __future__ import annotations

from llm_stream.run_batch.show_output import summarise


def test_summary_shows_status_and_the_first_choice() -> None:
    line = {
        "custom_id": "c1",
        "response": {"status_code": 200, "body": {"choices": [{"message": {"content": "hi"}}]}},
    }
    assert summarise(line).split() == ["c1", "200", "'hi'"]


def test_summary_of_an_error_shows_its_first_line() -> None:
    body = {"error": {"message": "bad thing\nmore detail"}}
    line = {"custom_id": "c2", "response": {"status_code": 400, "body": body}}
    assert "error: bad thing" in summarise(line)
    assert "more detail" not in summarise(line)


def test_summary_counts_multiple_choices() -> None:
    body = {"choices": [{"text": "x"}, {"text": "y"}]}
    line = {"custom_id": "c3", "response": {"status_code": 200, "body": body}}
    assert "[2 choices] x" in summarise(line)


def test_summary_of_a_vllm_shaped_error_line_reads_its_error_field() -> None:
    error = {"error": {"message": "model not found", "code": 404}}
    line = {"custom_id": "c4", "response": {"status_code": 404, "body": None}, "error": error}
    assert "error: model not found" in summarise(line)
    plain = {"custom_id": "c5", "response": {"status_code": 400, "body": None}, "error": "URL x"}
    assert "error: URL x" in summarise(plain)


def test_summary_of_a_responses_answer_shows_its_output_text() -> None:
    body = {
        "object": "response",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "a topic"}]}],
    }
    line = {"custom_id": "r1", "response": {"status_code": 200, "body": body}}
    assert summarise(line).split() == ["r1", "200", "'a", "topic'"]
