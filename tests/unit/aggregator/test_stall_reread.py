"""Which stalled batches are read again, reported and cleared: a broker back from a stale log
end may have put a batch's results below its aggregator's position, so each time a batch is
found stalled its partitions are read again; it is reported only after a re-read found nothing
more, and cleared once it holds more results than when reported."""

from __future__ import annotations

from llm_stream.aggregator.stalls import StallReports


def test_a_stalled_batch_is_re_read_first_and_reported_only_if_still_stalled_after() -> None:
    reports = StallReports()
    assert reports.decide({"b1"}, {"b1": 10, "b2": 5}) == ({"b1"}, set(), set())
    # Quiet for the set time again after the re-read: reported, and read again.
    assert reports.decide({"b1"}, {"b1": 10, "b2": 5}) == ({"b1"}, {"b1"}, set())
    reports.reported["b1"] = 10
    assert reports.decide({"b1"}, {"b1": 10, "b2": 5}) == ({"b1"}, set(), set())  # once


def test_a_re_read_that_drops_what_the_topic_lost_is_no_progress() -> None:
    reports = StallReports()
    reports.decide({"b1"}, {"b1": 10})
    # The re-read forgot results the topic lost: fewer than before, still reported.
    assert reports.decide({"b1"}, {"b1": 8}) == ({"b1"}, {"b1"}, set())


def test_results_past_the_report_clear_it_and_a_later_stall_is_re_read_first() -> None:
    reports = StallReports()
    reports.decide({"b1"}, {"b1": 10})
    reports.decide({"b1"}, {"b1": 10})
    reports.reported["b1"] = 10
    assert reports.decide(set(), {"b1": 9}) == (set(), set(), set())  # a re-read under way
    assert reports.decide(set(), {"b1": 14}) == (set(), set(), {"b1"})  # a resume's results
    del reports.reported["b1"]
    assert reports.decide({"b1"}, {"b1": 14}) == ({"b1"}, set(), set())


def test_batches_written_or_no_longer_owned_are_forgotten() -> None:
    reports = StallReports()
    reports.decide({"b1", "b2"}, {"b1": 1, "b2": 1})
    reports.reported.update({"b1": 1, "b2": 1})
    reports.decide(set(), {"b2": 1})
    assert set(reports.reported) == {"b2"}
    assert reports.decide({"b1"}, {"b1": 1}) == ({"b1"}, set(), set())  # b1 anew
