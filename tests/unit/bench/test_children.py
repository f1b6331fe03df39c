"""The protocol of the bench's engine children, with a fake side (``fake_bench_side``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_stream.bench.children import engine_child
from llm_stream.bench.support import BenchError, EngineSpec, Run

FAKE_SIDE = "tests.unit.bench.fake_bench_side"


def _spec(model: str = "m") -> EngineSpec:
    return EngineSpec(
        model=model, engine_flags=[], prompts=["a", "b", "c"], warmup_prompts=[], max_tokens=4
    )


def test_a_child_side_warms_up_once_then_runs_when_asked(tmp_path: Path) -> None:
    with engine_child(FAKE_SIDE, _spec(), tmp_path, "fake side") as child:
        assert child.info == {
            "device": "fake",
            "vllm_version": "0",
            "scheduler": {"max_num_seqs": 2},
        }
        runs = [child.run(), child.run()]
    assert runs == [Run(output_tokens=12, seconds=1.0), Run(output_tokens=12, seconds=2.0)]
    assert "engine logs go to stdout" in (tmp_path / "fake_bench_side.log").read_text()


def test_a_child_that_dies_warming_up_fails_the_bench_with_its_log(tmp_path: Path) -> None:
    with (
        pytest.raises(BenchError, match=r"(?s)fake side exited with 3.*could not start"),
        engine_child(FAKE_SIDE, _spec("fail-warm-up"), tmp_path, "fake side"),
    ):
        pass
