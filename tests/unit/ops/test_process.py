"""What a role's process sets up once: the garbage collector's pace (raised, never lowered),
whether Ctrl-C stopped it, and its logging and tracing."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from llm_stream.ops import process
from llm_stream.settings import Settings


@pytest.fixture
def threshold() -> Iterator[None]:
    """The collector's thresholds are process-wide: each test leaves them as it found them."""
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


@pytest.mark.usefixtures("threshold")
def test_the_young_threshold_is_raised_to_the_services_and_the_others_kept() -> None:
    gc.set_threshold(700, 11, 12)
    process.collect_garbage_less_often()
    assert gc.get_threshold() == (process.YOUNG_COLLECTION_THRESHOLD, 11, 12)


@pytest.mark.usefixtures("threshold")
def test_a_higher_threshold_is_never_lowered() -> None:
    gc.set_threshold(process.YOUNG_COLLECTION_THRESHOLD * 3, 10, 10)
    process.collect_garbage_less_often()
    process.collect_garbage_less_often()
    assert gc.get_threshold() == (process.YOUNG_COLLECTION_THRESHOLD * 3, 10, 10)


def test_interrupted_says_whether_ctrl_c_stopped_a_role(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_INTERRUPTED", threading.Event())  # not this test process's
    assert process.interrupted() is False
    process.mark_interrupted()
    assert process.interrupted() is True
    process.mark_interrupted()  # a second Ctrl-C changes nothing
    assert process.interrupted() is True


def test_a_process_logs_and_traces_as_its_settings_say(monkeypatch: pytest.MonkeyPatch) -> None:
    configured: list[tuple[object, ...]] = []
    monkeypatch.setattr(process, "configure_logging", lambda *args: configured.append(args))
    monkeypatch.setattr(process, "configure_tracing", lambda *args: configured.append(args))
    settings = Settings(log_format="json", log_level="DEBUG")
    process.start_process(settings, "llm-stream-test")
    assert configured == [("json", "DEBUG"), (settings, "llm-stream-test")]
