"""``--model`` is checked before vLLM is imported: a mistyped path is named at once, a hub id is
left to vLLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_stream.engine.model_path import ModelPathError, check_model_path, model_flag


def test_the_model_flag_is_read_in_both_forms() -> None:
    assert model_flag(["--dtype", "float32", "--model", "/m"]) == "/m"
    assert model_flag(["--model=/m", "--seed", "0"]) == "/m"
    assert model_flag(["--seed", "0"]) is None


def test_a_model_path_must_be_a_model_directory(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "mistral").mkdir()
    (tmp_path / "mistral" / "params.json").write_text("{}")
    (tmp_path / "weights.gguf").write_bytes(b"GGUF")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    for loadable in ("model", "mistral", "weights.gguf"):
        check_model_path(str(tmp_path / loadable))
    for name, says in (
        ("empty", "without config.json"),
        ("notes.txt", "is a file"),
        ("absent", "no such directory"),
    ):
        with pytest.raises(ModelPathError, match=says):
            check_model_path(str(tmp_path / name))


def test_a_name_that_may_be_a_hub_id_is_left_to_vllm() -> None:
    check_model_path("Qwen/Qwen3-0.6B")
    check_model_path("gpt2")
    for not_an_id in ("a/b/c", "./absent", "has space/model"):
        with pytest.raises(ModelPathError, match="not a Hugging Face model id"):
            check_model_path(not_an_id)
