from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from llm_stream.engine.tiny_model import HIDDEN_SIZE, NUM_HEADS, VOCAB_SIZE, build_tiny_model


def _digest(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
    }


def test_two_builds_in_separate_processes_are_byte_identical(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    build_tiny_model(first)
    subprocess.run(
        [sys.executable, "-m", "llm_stream", "tiny-model", str(second)],
        check=True,
        capture_output=True,
    )
    assert _digest(first) == _digest(second)
    assert set(_digest(first)) >= {"config.json", "model.safetensors", "tokenizer.json"}


def test_model_shape_suits_the_cpu_attention_kernel(tmp_path: Path) -> None:
    config = json.loads((build_tiny_model(tmp_path) / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] == HIDDEN_SIZE // NUM_HEADS == 64
    assert "transformers_version" not in config


def test_tokenizer_fits_the_vocabulary_and_has_a_chat_template(tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    build_tiny_model(tmp_path)
    tokenizer = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert tokenizer.get_vocab_size() <= VOCAB_SIZE
    ids = tokenizer.encode("Kafka carries requests to workers.").ids
    assert tokenizer.decode(ids) == "Kafka carries requests to workers."
    assert (
        "{% for message in messages %}"
        in json.loads((tmp_path / "tokenizer_config.json").read_text())["chat_template"]
    )
