"""The public surface is pinned: what ``import llm_stream`` promises, and what a wheel ships."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import llm_stream

PUBLIC = [
    "TERMINAL_STATUSES",
    "BatchClient",
    "BatchHandle",
    "BatchManifest",
    "BatchObject",
    "BatchStatus",
    "BatchStatusView",
    "BatchUsage",
    "BatchWriter",
    "ClientConfig",
    "EmptyBatchError",
    "FakeBatchClient",
    "InvalidLineError",
    "KafkaSecurityConfigError",
    "KafkaTlsError",
    "LlmStreamError",
    "ModelNotServedError",
    "OAuthTokenError",
    "ReplyMessage",
    "ReplyTimeoutError",
    "RequestCounts",
    "RequestMessage",
    "ResponseData",
    "ResultMessage",
    "Settings",
    "SettingsRefusedError",
    "StatusViewStoppedError",
    "SubmitError",
    "__version__",
]
ROOT = Path(__file__).resolve().parents[2]


def test_the_exported_names_are_pinned_and_all_resolve() -> None:
    assert llm_stream.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(llm_stream, name) is not None


def test_every_exported_error_is_a_llm_stream_error() -> None:
    errors = [
        getattr(llm_stream, name)
        for name in PUBLIC
        if isinstance(getattr(llm_stream, name), type)
        and issubclass(getattr(llm_stream, name), BaseException)
    ]
    assert len(errors) == 11
    assert all(issubclass(error, llm_stream.LlmStreamError) for error in errors)


def test_importing_the_client_does_not_load_the_engine() -> None:
    probe = "import sys, llm_stream; print(sorted({'vllm', 'torch'} & set(sys.modules)))"
    output = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"


def test_a_wheel_ships_llm_stream_typed_and_no_top_level_service(tmp_path: Path) -> None:
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--quiet", "--wheel-dir", str(tmp_path), str(ROOT)),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("llm_stream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {
        "llm_stream",
        f"llm_stream-{llm_stream.__version__}.dist-info",
    }
    assert "llm_stream/py.typed" in names
