"""Build a tiny, randomly initialised Llama model with its own tokenizer, byte for byte the same
on every run and machine.

Tests, the demo and benchmarks need a real model vLLM can load, and nothing may come from a hub.
Determinism comes from generating weights with NumPy's frozen ``RandomState`` stream and from
writing every file ourselves (no library version strings leak into the output).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SEED = 20261122
VOCAB_SIZE = 512
HIDDEN_SIZE = 128
INTERMEDIATE_SIZE = 256
NUM_LAYERS = 2
NUM_HEADS = 2  # head_dim 64: the CPU attention kernel rejects smaller heads
NUM_KV_HEADS = 1
MAX_POSITIONS = 512

BOS, EOS, PAD = "<|begin|>", "<|end|>", "<|pad|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, "<|system|>", "<|user|>", "<|assistant|>"]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_CORPUS = [
    "Kafka carries requests to workers and results back to the aggregator.",
    "The quick brown fox jumps over the lazy dog.",
    "A batch is complete when every request has exactly one result line.",
    "Hello, how are you today? I am fine, thank you for asking.",
    "Large language models predict the next token from the tokens before it.",
    "Continuous batching keeps the engine busy while new requests arrive.",
    "Offsets are committed only after the result has been published.",
    "What is the capital of France? Paris is the capital of France.",
    "Write a haiku about the sea, the wind and the long grey sky.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000; symbols: {} [] () <> = + - * / _ .",
]


def _config() -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB_SIZE,
        "hidden_size": HIDDEN_SIZE,
        "intermediate_size": INTERMEDIATE_SIZE,
        "num_hidden_layers": NUM_LAYERS,
        "num_attention_heads": NUM_HEADS,
        "num_key_value_heads": NUM_KV_HEADS,
        "head_dim": HIDDEN_SIZE // NUM_HEADS,
        "max_position_embeddings": MAX_POSITIONS,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "initializer_range": 0.02,
        # Untied: with tied embeddings a random model mostly repeats its last input token.
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "bos_token_id": SPECIAL_TOKENS.index(BOS),
        "eos_token_id": SPECIAL_TOKENS.index(EOS),
        "pad_token_id": SPECIAL_TOKENS.index(PAD),
        "attention_bias": False,
        "mlp_bias": False,
    }


def _weight_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """Parameter names and shapes of ``LlamaForCausalLM``."""
    head_dim = HIDDEN_SIZE // NUM_HEADS
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("model.embed_tokens.weight", (VOCAB_SIZE, HIDDEN_SIZE))
    ]
    for layer in range(NUM_LAYERS):
        prefix = f"model.layers.{layer}"
        shapes += [
            (f"{prefix}.input_layernorm.weight", (HIDDEN_SIZE,)),
            (f"{prefix}.self_attn.q_proj.weight", (NUM_HEADS * head_dim, HIDDEN_SIZE)),
            (f"{prefix}.self_attn.k_proj.weight", (NUM_KV_HEADS * head_dim, HIDDEN_SIZE)),
            (f"{prefix}.self_attn.v_proj.weight", (NUM_KV_HEADS * head_dim, HIDDEN_SIZE)),
            (f"{prefix}.self_attn.o_proj.weight", (HIDDEN_SIZE, NUM_HEADS * head_dim)),
            (f"{prefix}.post_attention_layernorm.weight", (HIDDEN_SIZE,)),
            (f"{prefix}.mlp.gate_proj.weight", (INTERMEDIATE_SIZE, HIDDEN_SIZE)),
            (f"{prefix}.mlp.up_proj.weight", (INTERMEDIATE_SIZE, HIDDEN_SIZE)),
            (f"{prefix}.mlp.down_proj.weight", (HIDDEN_SIZE, INTERMEDIATE_SIZE)),
        ]
    shapes.append(("model.norm.weight", (HIDDEN_SIZE,)))
    shapes.append(("lm_head.weight", (VOCAB_SIZE, HIDDEN_SIZE)))
    return shapes


def _weights() -> dict[str, npt.NDArray[np.float32]]:
    rng = np.random.RandomState(SEED)  # frozen stream: identical across NumPy versions
    weights: dict[str, npt.NDArray[np.float32]] = {}
    for name, shape in _weight_shapes():
        if name.endswith("norm.weight"):
            weights[name] = np.ones(shape, dtype=np.float32)
        else:
            # Unit-variance activations (std 1/sqrt(fan_in)) make greedy text depend on the
            # prompt, so tests comparing outputs compare something.
            scale = 1.0 if name.endswith("embed_tokens.weight") else shape[-1] ** -0.5
            if name == "lm_head.weight":
                scale *= 8.0  # peaked next-token distributions: sampling stays readable
            weights[name] = (rng.standard_normal(shape) * scale).astype(np.float32)
    return weights


def _tokenizer_json() -> str:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    if tokenizer.get_vocab_size() > VOCAB_SIZE:
        raise RuntimeError("tokenizer grew past the model's vocabulary")
    # Re-serialise with sorted keys so the file does not depend on hash-map order.
    return json.dumps(json.loads(tokenizer.to_str()), indent=2, sort_keys=True) + "\n"


def _tokenizer_config() -> dict[str, Any]:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "add_bos_token": False,
        "model_max_length": MAX_POSITIONS,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }


def _json_bytes(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def build_tiny_model(directory: Path) -> Path:
    """Write the model to ``directory`` (created if needed) and return it."""
    from safetensors.numpy import save

    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "config.json": _json_bytes(_config()),
        "generation_config.json": _json_bytes(
            {
                "bos_token_id": SPECIAL_TOKENS.index(BOS),
                "eos_token_id": SPECIAL_TOKENS.index(EOS),
                "pad_token_id": SPECIAL_TOKENS.index(PAD),
            }
        ),
        "tokenizer.json": _tokenizer_json().encode(),
        "tokenizer_config.json": _json_bytes(_tokenizer_config()),
        "special_tokens_map.json": _json_bytes(
            {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD}
        ),
        "model.safetensors": save(_weights(), metadata={"format": "pt"}),
    }
    for name, content in files.items():
        target = directory / name
        temporary = target.with_suffix(target.suffix + ".tmp")
        temporary.write_bytes(content)
        temporary.replace(target)
    return directory
