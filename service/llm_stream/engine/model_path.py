"""Check ``--model`` before vLLM is imported: importing it and starting the engine take many
seconds, only to end in a hub error about repository ids when a path was mistyped.

A local path must be a model directory (``config.json``, or Mistral's ``params.json``) or a
GGUF file. A name that is not a path may be a Hugging Face hub id: only its form is checked
here (no network); whether the hub has it is left to vLLM, whose message is clear about it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llm_stream.errors import LlmStreamError

#: Files that make a directory a model vLLM can load.
MODEL_CONFIG_FILES = ("config.json", "params.json")

#: The form of a hub id, as huggingface_hub's ``validate_repo_id`` holds it: ``[org/]name``.
_HUB_ID = re.compile(r"^(?:[\w\-.]{1,96}/)?[\w\-.]{1,96}$")


class ModelPathError(LlmStreamError, ValueError):
    """``--model`` names no model vLLM could load; the message says what to give instead."""


def model_flag(argv: Sequence[str]) -> str | None:
    """The value of ``--model`` in a vLLM command line (``--model X`` or ``--model=X``)."""
    for index, arg in enumerate(argv):
        if arg == "--model" and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--model="):
            return arg.partition("=")[2]
    return None


def _looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~", ".\\")) or model.count("/") > 1


def check_model_path(model: str) -> None:
    """Raise ``ModelPathError`` unless ``model`` may be a model vLLM can load."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not any((path / name).is_file() for name in MODEL_CONFIG_FILES):
            raise ModelPathError(
                f"--model {model} is a directory without config.json: not a model directory. "
                "Point --model at the directory that holds the model's config.json and weights."
            )
        return
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelPathError(
                f"--model {model} is a file, not a model directory. Point --model at the "
                "directory that holds the model's config.json (or at a .gguf file)."
            )
        return
    if _looks_like_path(model) or not _HUB_ID.match(model):
        raise ModelPathError(
            f"--model {model}: no such directory, and not a Hugging Face model id. Give a local "
            "model directory (with config.json) or a hub id such as Qwen/Qwen3-0.6B."
        )


def served_model_names(args: Any) -> tuple[str, ...]:
    """The names vLLM serves the model under, from its parsed arguments: every
    ``--served-model-name``, else the model as given."""
    names = getattr(args, "served_model_name", None)
    if isinstance(names, str):
        return (names,)
    return tuple(names) if names else (str(args.model),)
