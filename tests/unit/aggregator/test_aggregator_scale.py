"""10,000 open batches fit in the default descriptor limit (1024), with memory to spare."""

from __future__ import annotations

import logging
import os
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_stream.aggregator.core import BatchAggregator
from llm_stream.files.store import LocalFileStore
from tests.fakes import FakeStatusPublisher
from tests.unit.aggregator.test_core import TOPIC, _manifest, _records, _result

logger = logging.getLogger(__name__)
OPEN_BATCHES = 10_000
DEFAULT_DESCRIPTOR_LIMIT = 1024


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


@pytest.fixture
def default_descriptor_limit() -> Iterator[None]:
    """Run under the usual soft limit of 1024 descriptors, whatever this shell allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if _open_descriptors() > DEFAULT_DESCRIPTOR_LIMIT // 4:
        pytest.skip("this process already holds too many descriptors to measure")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, DEFAULT_DESCRIPTOR_LIMIT), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.usefixtures("default_descriptor_limit")
async def test_ten_thousand_open_batches_use_a_handful_of_descriptors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    descriptors_before, rss_before = _open_descriptors(), _rss_kib()
    started = time.monotonic()
    status = FakeStatusPublisher()
    aggregator = BatchAggregator(
        LocalFileStore(tmp_path / "out"), status, spool_root=tmp_path / "spool"
    )
    try:
        peak = 0
        for start in range(0, OPEN_BATCHES, 1000):  # polls of 1000 records, as the app reads
            values = [_result(f"b{i}", "only") for i in range(start, start + 1000)]
            await aggregator.add_results(_records(values, start=start))
            peak = max(peak, _open_descriptors())
        opened_in = time.monotonic() - started
        assert aggregator.open_batches == OPEN_BATCHES
        assert aggregator.committable() == {(TOPIC, 0): 0}
        rss_open = _rss_kib()

        # Then every one of them completes: each write opens and closes its own files.
        for i in range(0, OPEN_BATCHES, 100):
            await aggregator.add_manifests([_manifest(f"b{i}", 1)])
            peak = max(peak, _open_descriptors())
        assert aggregator.batches_written == OPEN_BATCHES // 100
        assert aggregator.committable() == {(TOPIC, 0): 1}
    finally:
        aggregator.close()
    report = (
        f"{OPEN_BATCHES} open batches: peak {peak} descriptors (before {descriptors_before}), "
        f"RSS {rss_before} -> {rss_open} KiB (+{rss_open - rss_before} KiB), peak RSS of the "
        f"process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss} KiB, "
        f"opened in {opened_in:.2f} s"
    )
    logger.warning(report)
    with capsys.disabled():
        print(f"\n{report}")
    assert peak - descriptors_before < 20, report
    assert peak < DEFAULT_DESCRIPTOR_LIMIT // 10, report
    assert rss_open - rss_before < 200 * 1024, report  # well under 20 KiB per open batch
    assert _open_descriptors() <= descriptors_before, report
    assert not list((tmp_path / "spool").iterdir())
