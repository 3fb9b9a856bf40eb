"""Model hot swap under load: the component keeps classifying while a configuration update swaps the model."""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.server import AgentOptions, AgentServer
from agent_client import AgentClient
from component.app import InferenceApp, StartOptions
from component.config import build_config

from ..helpers import IMAGES_DIR, MODEL_DIR

pytestmark = pytest.mark.integration

INT8_DIR = MODEL_DIR.parent / "efficientnet-lite0-int8"


@pytest.fixture
def real_agent(socket_path: Path) -> Iterator[AgentServer]:
    server = AgentServer(AgentOptions(socket=socket_path, models_root=MODEL_DIR.parent))
    server.start()
    yield server
    server.stop(grace=1.0)


def scripted(
    after_frames: dict[int, dict[str, str]], app: list[InferenceApp]
) -> Callable[[], dict[str, str] | None]:
    """Stands in for the core's configuration feed: once the loop has read N frames, the whole
    configuration the core would send after that update (recipe keys), once."""
    due = dict(after_frames)

    def updates() -> dict[str, str] | None:
        frames = app[0].loop.counters.frames if app else 0
        ready = [n for n in due if n <= frames]
        return due.pop(max(ready)) if ready else None

    return updates


Feed = Callable[[], "dict[str, str] | None"]


def run_app(
    socket_path: Path,
    capsys: pytest.CaptureFixture[str],
    frames: int,
    updates: dict[int, dict[str, object]] | Callable[[list[InferenceApp]], Feed],
    **config: object,
) -> tuple[InferenceApp, list[dict[str, object]]]:
    """Runs the app on the bundled images for `frames` frames; `updates` are scripted configuration updates
    (see `scripted`), or makes the feed itself from the list that will hold the app."""
    base = {
        "agent_socket": socket_path,
        "image_directory": IMAGES_DIR,
        "inference_interval": 0.0,
        "publisher": "stdout",
        "status_interval": 0.0,
        "max_frames": frames,
        **config,
    }
    holder: list[InferenceApp] = []
    app = InferenceApp(
        build_config(base),
        threading.Event(),
        updates=scripted(updates, holder) if isinstance(updates, dict) else updates(holder),
        options=StartOptions(cli=base),
    )
    holder.append(app)
    try:
        app.start()
        app.run()
    finally:
        app.close()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return app, [line["payload"] for line in lines]


def test_swapping_the_model_under_load_loses_no_frame_and_unloads_the_old_one(
    real_agent: AgentServer, socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app, results = run_app(socket_path, capsys, frames=20, updates={8: {"ModelPath": str(INT8_DIR)}})
    assert [r["frame-id"] for r in results] == list(range(1, 21))
    names = [r["model"]["name"] for r in results]  # type: ignore[index]
    switch = names.index("efficientnet-lite0-int8")
    assert 2 <= switch <= 10 and set(names[:switch]) == {"efficientnet-lite0"}
    assert set(names[switch:]) == {"efficientnet-lite0-int8"}
    assert all(r["inference-results"] or "rocket" in str(r["source"]) for r in results)
    with AgentClient(socket_path) as client:  # the old one went at the swap, the new one when the app stopped
        assert [m.name for m in client.list_models()] == []
    assert app.loop.counters.failed_frames == 0 and app.loop.counters.bad_frames == 0


def test_a_model_folder_that_comes_to_resolve_elsewhere_is_loaded_from_there_without_a_restart(
    real_agent: AgentServer, socket_path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A model component upgrade relinks `current`; the running component looks at the link about once a
    second (not on every frame) and loads the new package, losing no frame."""
    link = tmp_path / "current"
    link.symlink_to(MODEL_DIR)

    def relink_after_8_frames(holder: list[InferenceApp]) -> Feed:
        def feed() -> dict[str, str] | None:
            if link.resolve() == MODEL_DIR.resolve() and holder and holder[0].loop.counters.frames >= 8:
                (tmp_path / "next").symlink_to(INT8_DIR)
                (tmp_path / "next").replace(link)
            return None  # no configuration update: only the link changes

        return feed

    _, results = run_app(socket_path, capsys, 800, relink_after_8_frames, model_path=link)
    assert [r["frame-id"] for r in results] == list(range(1, 801))
    names = [r["model"]["name"] for r in results]  # type: ignore[index]
    switch = names.index("efficientnet-lite0-int8")
    assert switch > 8 and set(names[:switch]) == {"efficientnet-lite0"}
    assert set(names[switch:]) == {"efficientnet-lite0-int8"}


def test_the_same_model_name_gets_a_name_of_its_own_while_both_are_loaded(
    real_agent: AgentServer, socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    update = {"ModelPath": str(INT8_DIR), "ModelName": "efficientnet-lite0"}
    _, results = run_app(socket_path, capsys, frames=6, updates={3: update})
    names = {r["model"]["name"] for r in results}  # type: ignore[index]
    assert "efficientnet-lite0" in names
    assert any(n.startswith("efficientnet-lite0-") and n != "efficientnet-lite0" for n in names)


def test_a_bad_model_update_keeps_the_running_model(
    real_agent: AgentServer, socket_path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    app, results = run_app(socket_path, capsys, frames=6, updates={3: {"ModelPath": str(tmp_path)}})
    assert [r["frame-id"] for r in results] == list(range(1, 7))
    assert {r["model"]["name"] for r in results} == {"efficientnet-lite0"}  # type: ignore[index]
    assert app.config.model_path is None and app.configuration.state == "REFUSED"
    assert "manifest.json does not exist" in app.configuration.reason


def test_a_model_file_that_fails_its_digest_is_refused_by_the_agent_and_the_running_model_kept(
    socket_path: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Refused before the agent is asked (the agent of the SageMakerEdgeManager variant checks no digest;
    ours checks again at LoadModel, on the bytes it loads)."""
    root = tmp_path / "models"
    shutil.copytree(MODEL_DIR, root / "good")
    shutil.copytree(MODEL_DIR, root / "bad")
    with (root / "bad" / "model.onnx").open("r+b") as model:
        model.seek(-1, 2)
        last = model.read(1)
        model.seek(-1, 2)
        model.write(bytes([last[0] ^ 0xFF]))
    server = AgentServer(AgentOptions(socket=socket_path, models_root=root))
    server.start()
    try:
        update: dict[int, dict[str, object]] = {3: {"ModelPath": str(root / "bad")}}
        app, results = run_app(socket_path, capsys, frames=6, updates=update, model_path=root / "good")
    finally:
        server.stop(grace=1.0)
    assert [r["frame-id"] for r in results] == list(range(1, 7))
    assert {r["model"]["name"] for r in results} == {"efficientnet-lite0"}  # type: ignore[index]
    assert app.configuration.state == "REFUSED"
    assert re.search(r"model\.onnx has SHA-256 [0-9a-f]{64}, the manifest says", app.configuration.reason)
