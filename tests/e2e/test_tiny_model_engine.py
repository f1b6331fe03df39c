"""vLLM loads the tiny model on this machine and generates deterministically."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.engine


def test_vllm_generates_from_the_tiny_model(tiny_model: str) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    llm = LLM(model=tiny_model, dtype="float32", max_model_len=256, enforce_eager=True, seed=0)
    try:
        params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
        prompts = ["Hello, how are you", "The quick brown fox", "Hello, how are you"]
        outputs = [output.outputs[0] for output in llm.generate(prompts, params)]
        assert all(len(output.token_ids) == 8 for output in outputs)
        assert outputs[0].text == outputs[2].text
        assert outputs[0].token_ids != outputs[1].token_ids
        chat = llm.chat([{"role": "user", "content": "hi"}], params)[0]
        assert chat.prompt_token_ids is not None
        assert chat.prompt_token_ids[0] == 1  # the template starts with <|begin|>
    finally:
        llm.llm_engine.engine_core.shutdown()
