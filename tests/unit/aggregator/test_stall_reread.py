"""Before a stalled batch is reported, its aggregator reads its partitions again from the
committed offsets once (results a broker wrote below the reader's position); a batch still
stalled after that is reported, and one that gets results past that point may re-read again."""

from __future__ import annotations

from pathlib import Path

from llm_stream.aggregator.app import AggregatorApp
from llm_stream.settings import Settings


class _Loop:
    def __init__(self) -> None:
        self.rereads = 0

    def reread_from_committed(self) -> None:
        self.rereads += 1


def _app(tmp_path: Path) -> tuple[AggregatorApp, _Loop]:
    app = AggregatorApp(Settings(output_dir=tmp_path))
    loop = _Loop()
    app.loop = loop  # type: ignore[assignment]
    return app, loop


async def test_a_newly_stalled_batch_is_re_read_once_then_reported(tmp_path: Path) -> None:
    app, loop = _app(tmp_path)
    held = {"b1": 10, "b2": 5}
    assert app._reread_before_reporting({"b1"}, held) == {"b1"}  # not reported yet
    assert loop.rereads == 1
    assert app._reread_before_reporting({"b1"}, held) == set()  # still stalled: reported
    assert app._reread_before_reporting({"b1", "b2"}, held) == {"b2"}
    assert loop.rereads == 2


async def test_results_past_the_re_read_let_a_later_stall_re_read_again(tmp_path: Path) -> None:
    app, loop = _app(tmp_path)
    app._reread_before_reporting({"b1"}, {"b1": 10})
    # The re-read dropped what the topic lost and found what was written below the position:
    # fewer than before is no progress.
    assert app._reread_before_reporting({"b1"}, {"b1": 8}) == set()
    assert loop.rereads == 1
    app._reread_before_reporting(set(), {"b1": 12})  # a resume's results came
    assert app._reread_before_reporting({"b1"}, {"b1": 12}) == {"b1"}
    assert loop.rereads == 2


async def test_batches_written_or_no_longer_owned_are_forgotten(tmp_path: Path) -> None:
    app, _ = _app(tmp_path)
    app._reread_before_reporting({"b1", "b2"}, {"b1": 1, "b2": 1})
    app._reread_before_reporting(set(), {"b2": 1})
    assert set(app._reread) == {"b2"}
