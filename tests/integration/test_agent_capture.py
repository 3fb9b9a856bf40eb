"""CaptureData paths and quota (issue 11): model names are checked before they become paths, captures are
bounded on disk by bytes and by count (the oldest deleted, counted), one request is bounded in size."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.datacapture import CaptureLimits
from agent.server import AgentOptions, AgentServer
from agent_client import AgentClient, CaptureStatus, ClientOptions
from agent_client.errors import InvalidRequestError

pytestmark = pytest.mark.integration

KIB = 1024


def _settle(client: AgentClient, capture_id: str) -> CaptureStatus:
    deadline = time.monotonic() + 10
    while (status := client.capture_status(capture_id)) is CaptureStatus.IN_PROGRESS:
        assert time.monotonic() < deadline, "the capture never finished"
        time.sleep(0.01)
    return status


@pytest.fixture
def small_quota(models_root: Path, tmp_path: Path, socket_path: Path) -> Iterator[AgentServer]:
    limits = CaptureLimits(max_bytes=600 * KIB, max_count=3, max_request_bytes=300 * KIB)
    options = AgentOptions(
        socket=socket_path, models_root=models_root, capture_dir=tmp_path / "capture", capture_limits=limits
    )
    server = AgentServer(options)
    server.start()
    yield server
    server.stop(grace=1.0)


@pytest.mark.parametrize("name", ["/abs", "../..", "../../escape", "a/b", "..", "", "x" * 200])
def test_a_model_name_that_is_no_model_name_writes_nothing(
    client: AgentClient, agent: AgentServer, tmp_path: Path, name: str
) -> None:
    """Before: /abs and ../.. wrote outside the capture folder."""
    before = {p for p in tmp_path.rglob("*")}
    with pytest.raises(InvalidRequestError, match="model_name"):
        client.capture_data(name, {"x": np.zeros((1, 4), np.float32)}, {})
    time.sleep(0.1)
    assert {p for p in tmp_path.rglob("*")} == before
    assert not Path("/abs").exists()


def test_captures_beyond_the_count_delete_the_oldest(small_quota: AgentServer) -> None:
    with AgentClient(small_quota.options.socket, ClientOptions(timeout=5)) as client:
        ids = []
        for i in range(5):
            ids.append(client.capture_data("tiny", {"x": np.full((1, 4), i, np.float32)}, {}))
            assert _settle(client, ids[-1]) is CaptureStatus.SUCCESS
    assert small_quota.capture is not None and small_quota.options.capture_dir is not None
    kept = sorted(p.name for p in (small_quota.options.capture_dir / "tiny").iterdir())
    assert kept == sorted(ids[2:])
    assert small_quota.capture.deleted == 2


def test_captures_beyond_the_bytes_delete_the_oldest(small_quota: AgentServer) -> None:
    big = np.zeros((1, 50 * KIB), np.float32)  # 200 KiB each: three would pass the 600 KiB quota
    with AgentClient(small_quota.options.socket, ClientOptions(timeout=5)) as client:
        ids = [client.capture_data("big", {"x": big}, {}) for _ in range(3)]
        assert [_settle(client, i) for i in ids] == [CaptureStatus.SUCCESS] * 3
    assert small_quota.options.capture_dir is not None and small_quota.capture is not None
    folder = small_quota.options.capture_dir / "big"
    assert sorted(p.name for p in folder.iterdir()) == sorted(ids[1:])
    on_disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert on_disk <= 600 * KIB
    assert small_quota.capture.deleted == 1


def test_the_quota_counts_captures_found_at_start(
    models_root: Path, tmp_path: Path, socket_path: Path
) -> None:
    for i in range(4):
        (tmp_path / "capture" / "old" / f"capture-{i}").mkdir(parents=True)
        (tmp_path / "capture" / "old" / f"capture-{i}" / "capture.json").write_text("{}")
        time.sleep(0.01)  # distinct modification times: the oldest go first
    limits = CaptureLimits(max_count=2)
    server = AgentServer(
        AgentOptions(
            socket=socket_path,
            models_root=models_root,
            capture_dir=tmp_path / "capture",
            capture_limits=limits,
        )
    )
    server.start()
    server.stop(grace=1.0)
    assert sorted(p.name for p in (tmp_path / "capture" / "old").iterdir()) == ["capture-2", "capture-3"]


def test_one_capture_request_is_bounded(small_quota: AgentServer) -> None:
    """Before: 535 MB accepted."""
    refused = pytest.raises(InvalidRequestError, match=r"more than the 307200 one capture may take")
    with AgentClient(small_quota.options.socket, ClientOptions(timeout=5)) as client, refused:
        client.capture_data("tiny", {"x": np.zeros((1, 100 * KIB), np.float32)}, {})
