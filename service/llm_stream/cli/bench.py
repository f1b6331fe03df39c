"""``llm-stream bench``: the worker's throughput next to vLLM's offline ``LLM.generate``, one run.

A ratio measured on one machine in one run says what the Kafka path costs; absolute figures
from different runs or machines do not. Method:

1. N deterministic prompts; greedy sampling with ``ignore_eos`` so every request yields exactly
   ``--max-tokens`` tokens on both sides (the totals are checked, not assumed).
2. Offline: a child process (``llm_stream.cli.bench_offline``) starts ``vllm.LLM`` with the engine
   flags, warms up on other prompts, then times one ``generate`` call on the N prompts.
3. Worker: ``llm-stream worker`` on fresh topics (embedded broker unless
   ``--bootstrap-servers``) with the same engine flags and its shipped defaults (it asks vLLM
   for the offline class's scheduler limits, so both sides batch alike). Warm-up requests are
   answered before the clock starts (engine start-up is excluded); the time runs from the first
   publish of the N requests to the arrival of the last result. Every ``custom_id`` must be
   answered with status 200; completion tokens come from ``usage``.
4. The two measurements run one after the other so they never share the CPU or GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from llm_stream.cli.bench_offline import OfflineResult, OfflineSpec
from llm_stream.settings import Settings

#: Engine flags for the tiny model on a small CPU; an ``--engine-arg`` naming the same option wins.
DEFAULT_ENGINE_FLAGS = ("--dtype=float32", "--max-model-len=256", "--enforce-eager", "--seed=0")
PROMPT_TEMPLATE = "{label} {i}: tell me about Kafka partitions and consumer groups"
WARMUP_REQUESTS = 8
OFFLINE_TIMEOUT_S = 3600.0
WORKER_START_TIMEOUT_S = 900.0
WORKER_RUN_TIMEOUT_S = 3600.0
#: Below this many seconds per side, run-to-run noise swamps the ratio (seen on 2 CPU cores).
SHORT_WINDOW_S = 5.0


class BenchError(RuntimeError):
    """The benchmark cannot give an honest figure; the message says why."""


@dataclass(frozen=True, slots=True)
class Measurement:
    output_tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds if self.seconds > 0 else 0.0


def build_prompts(count: int, label: str = "Request") -> list[str]:
    """Distinct, deterministic prompts; warm-up ones use another label so no prefix is cached."""
    return [PROMPT_TEMPLATE.format(label=label, i=i) for i in range(count)]


def split_engine_args(values: Iterable[str]) -> list[str]:
    """``--engine-arg`` values as CLI tokens; one value may hold several (``--dtype float32``)."""
    return [token for value in values for token in shlex.split(value)]


def flag_name(token: str) -> str | None:
    """The option a token sets, normalised (``--no-enforce_eager=x`` -> ``enforce-eager``)."""
    if not token.startswith("--"):
        return None
    return token[2:].split("=", 1)[0].replace("_", "-").removeprefix("no-")


def _option_groups(flags: Sequence[str]) -> list[tuple[str | None, list[str]]]:
    groups: list[tuple[str | None, list[str]]] = []
    for token in flags:
        name = flag_name(token)
        if name is not None or not groups:
            groups.append((name, [token]))
        else:
            groups[-1][1].append(token)  # a separate value of the option before
    return groups


def merge_engine_flags(defaults: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """``defaults`` minus every option ``overrides`` names (with its values), then ``overrides``."""
    overridden = {name for name, _ in _option_groups(overrides)}
    kept = [
        t for name, tokens in _option_groups(defaults) if name not in overridden for t in tokens
    ]
    return [*kept, *overrides]


def custom_ids(count: int) -> list[str]:
    return [f"req-{i}" for i in range(count)]


def request_lines(batch_id: str, prompts: Sequence[str], max_tokens: int) -> list[bytes]:
    """One request message per prompt, its body the twin of the offline ``SamplingParams``.

    No ``model`` in the body: the worker then serves its one model under whatever name.
    """
    line = {"batch_id": batch_id, "method": "POST", "url": "/v1/completions"}
    params = {"max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}
    return [
        orjson.dumps({**line, "custom_id": cid, "body": {"prompt": prompt, **params}})
        for cid, prompt in zip(custom_ids(len(prompts)), prompts, strict=True)
    ]


class ResultTally:
    """Results of one batch: the first answer per ``custom_id`` counts, redeliveries are dropped."""

    def __init__(self, batch_id: str, expected: Iterable[str]) -> None:
        self.batch_id = batch_id
        self._pending = set(expected)
        self.completion_tokens = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, result: Mapping[str, Any]) -> None:
        """Count ``result`` if it answers a pending request; raise on anything but a 200."""
        custom_id = result.get("custom_id")
        if result.get("batch_id") != self.batch_id or custom_id not in self._pending:
            return
        response = result.get("response") or {}
        if response.get("status_code") != 200:
            raise BenchError(f"{custom_id} was not answered with 200: {json.dumps(result)[:1500]}")
        self._pending.discard(custom_id)
        self.completion_tokens += int(response["body"]["usage"]["completion_tokens"])


def check_tokens(side: str, measured: Measurement, expected: int) -> None:
    if measured.output_tokens != expected:
        raise BenchError(
            f"{side} produced {measured.output_tokens} tokens, expected {expected}: "
            "requests did not all run to --max-tokens, so tokens/s would not compare"
        )


def summarise(offline: Measurement, worker: Measurement, **context: Any) -> dict[str, Any]:
    """The figures ``run`` prints: both measurements, the ratio worker/offline and ``context``."""
    ratio = worker.tokens_per_s / offline.tokens_per_s if offline.tokens_per_s else 0.0
    sides = {"offline": offline, "worker": worker}
    figures = {
        k: {**asdict(m), "seconds": round(m.seconds, 4), "tokens_per_s": round(m.tokens_per_s, 2)}
        for k, m in sides.items()
    }
    return {**context, **figures, "ratio": round(ratio, 4)}


def format_table(summary: Mapping[str, Any]) -> str:
    rows = [("offline LLM.generate", summary["offline"]), ("worker via Kafka", summary["worker"])]
    lines = [
        f"llm-stream bench: {summary['prompts']} prompts x {summary['max_tokens']} tokens, "
        f"max in flight {summary['max_in_flight'] or 'default'}, device {summary['device']}, "
        f"vLLM {summary['vllm_version']}",
        f"engine flags: {' '.join(summary['engine_flags'])}",
        f"offline scheduler limits: {summary['scheduler']}",
        f"{'':<22}{'tokens':>9}{'wall s':>10}{'tokens/s':>11}",
        *(
            f"{name:<22}{s['output_tokens']:>9}{s['seconds']:>10.2f}{s['tokens_per_s']:>11.1f}"
            for name, s in rows
        ),
        f"ratio worker/offline: {summary['ratio']:.3f}",
    ]
    return "\n".join(lines)


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return env


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _run_offline(spec: OfflineSpec, workdir: Path) -> OfflineResult:
    result_path, log_path = workdir / "offline.json", workdir / "offline.log"
    with log_path.open("wb") as log:
        try:
            done = subprocess.run(
                [sys.executable, "-m", "llm_stream.cli.bench_offline", str(result_path)],
                input=json.dumps(spec).encode(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(),
                timeout=OFFLINE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise BenchError(f"offline run timed out:\n{_tail(log_path)}") from error
    if done.returncode != 0:
        raise BenchError(f"offline run exited with {done.returncode}:\n{_tail(log_path)}")
    result: OfflineResult = json.loads(result_path.read_text())
    return result


@contextmanager
def _bootstrap(servers: str | None) -> Iterator[str]:
    if servers:
        yield servers
        return
    from llm_stream.cli.embedded_broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


def bench_settings(bootstrap: str, run_id: str) -> dict[str, str]:
    """Settings fields for a run: its own topics and group, so no other data is counted."""
    names = ("requests", "results", "batches", "batch_status", "dead_letter")
    fields = {f"{name}_topic": f"llm-stream-bench-{run_id}.{name}" for name in names}
    fields["worker_group_id"] = f"llm-stream-bench-{run_id}"
    return {**fields, "bootstrap_servers": bootstrap}


async def _answered(
    consumer: Any, tally: ResultTally, worker: subprocess.Popen[bytes], within: float
) -> float:
    """Consume results until ``tally`` is done; return when the last one arrived."""
    deadline = time.monotonic() + within
    while tally.pending:
        if worker.poll() is not None:
            raise BenchError(f"the worker exited with {worker.returncode}")
        if time.monotonic() > deadline:
            raise BenchError(f"{tally.pending} requests of {tally.batch_id} unanswered")
        batches = await consumer.getmany(timeout_ms=200)
        for record in (r for records in batches.values() for r in records):
            tally.add(orjson.loads(record.value))
    return time.perf_counter()


async def _measure_worker(
    settings: Settings, worker: subprocess.Popen[bytes], prompts: list[str], max_tokens: int
) -> Measurement:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    kwargs = settings.kafka_client_kwargs()
    producer = AIOKafkaProducer(**kwargs, linger_ms=5)
    consumer = AIOKafkaConsumer(
        settings.results_topic, **kwargs, auto_offset_reset="earliest", fetch_max_wait_ms=50
    )
    await producer.start()
    await consumer.start()
    try:

        async def publish(lines: list[bytes]) -> None:
            sent = [await producer.send(settings.requests_topic, line) for line in lines]
            await asyncio.gather(*sent)

        warmup_id = f"bench-warmup-{uuid.uuid4().hex[:8]}"
        warmup = build_prompts(WARMUP_REQUESTS, label="Warm-up")
        await publish(request_lines(warmup_id, warmup, max_tokens))
        _say("waiting for the worker's engine to answer the warm-up requests")
        tally = ResultTally(warmup_id, custom_ids(len(warmup)))
        await _answered(consumer, tally, worker, WORKER_START_TIMEOUT_S)

        batch_id = f"bench-{uuid.uuid4().hex[:8]}"
        tally = ResultTally(batch_id, custom_ids(len(prompts)))
        _say(f"measuring the worker on {len(prompts)} requests")
        started = time.perf_counter()
        await publish(request_lines(batch_id, prompts, max_tokens))
        finished = await _answered(consumer, tally, worker, WORKER_RUN_TIMEOUT_S)
        return Measurement(tally.completion_tokens, finished - started)
    finally:
        await consumer.stop()
        await producer.stop()


def _stop(worker: subprocess.Popen[bytes]) -> int:
    """SIGTERM, as a deployment would stop it; SIGKILL if it does not drain within a minute."""
    worker.terminate()
    try:
        return worker.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.wait()


def _run_worker(
    model: str, flags: list[str], args: argparse.Namespace, prompts: list[str], workdir: Path
) -> Measurement:
    from llm_stream.kafka.topics import ensure_topics

    command = [sys.executable, "-m", "llm_stream", "worker", "--model", model, *flags]
    if args.max_in_flight is not None:
        command += ["--max-in-flight", str(args.max_in_flight)]
    log_path = workdir / "worker.log"
    with _bootstrap(args.bootstrap_servers) as bootstrap, log_path.open("wb") as log:
        fields = bench_settings(bootstrap, uuid.uuid4().hex[:8])
        settings = Settings().with_overrides(**fields)
        asyncio.run(ensure_topics(settings))
        env = _child_env({f"LLM_STREAM_{k.upper()}": v for k, v in fields.items()})
        worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            return asyncio.run(_measure_worker(settings, worker, prompts, args.max_tokens))
        except BenchError as error:
            raise BenchError(f"{error}\nworker log:\n{_tail(log_path)}") from error
        finally:
            if (code := _stop(worker)) != 0:
                _say(f"the worker exited with {code} on SIGTERM:\n{_tail(log_path, 800)}")


def _bench(args: argparse.Namespace) -> dict[str, Any]:
    if args.prompts < 1 or args.max_tokens < 1:
        raise BenchError("--prompts and --max-tokens must be at least 1")
    engine_flags = merge_engine_flags(DEFAULT_ENGINE_FLAGS, split_engine_args(args.engine_arg))
    prompts, warmup = build_prompts(args.prompts), build_prompts(WARMUP_REQUESTS, "Warm-up")
    expected_tokens = args.prompts * args.max_tokens
    with tempfile.TemporaryDirectory(prefix="llm-stream-bench-") as tmp:
        _say(f"offline LLM.generate on {len(prompts)} prompts")
        spec = OfflineSpec(
            model=args.model,
            engine_flags=engine_flags,
            prompts=prompts,
            warmup_prompts=warmup,
            max_tokens=args.max_tokens,
        )
        found = _run_offline(spec, Path(tmp))
        offline = Measurement(found["output_tokens"], found["seconds"])
        check_tokens("offline LLM.generate", offline, expected_tokens)
        scheduler = [
            f"max_num_seqs={found['max_num_seqs']}",
            f"max_num_batched_tokens={found['max_num_batched_tokens']}",
        ]
        worker = _run_worker(args.model, engine_flags, args, prompts, Path(tmp))
        check_tokens("the worker", worker, expected_tokens)
    if min(offline.seconds, worker.seconds) < SHORT_WINDOW_S:
        _say(f"a side ran under {SHORT_WINDOW_S:.0f} s: the ratio is noisy, raise --prompts")
    return summarise(
        offline,
        worker,
        prompts=args.prompts,
        max_tokens=args.max_tokens,
        max_in_flight=args.max_in_flight,
        device=found["device"],
        vllm_version=found["vllm_version"],
        engine_flags=engine_flags,
        scheduler=" ".join(scheduler),
    )


def main(args: argparse.Namespace) -> int:
    try:
        summary = _bench(args)
    except BenchError as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps(summary) if args.json else format_table(summary), flush=True)
    return 0
