"""Several frames per Predict against the real agent: a model with a dynamic batch takes them in one call, a
model with a fixed batch gets as many calls as it needs (the last one padded), and every frame keeps its own
result."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.server import AgentOptions, AgentServer
from agent_client import AgentClient, ClientOptions
from component.classify import RemoteModel
from component.preprocess import Preprocessor, decode_image
from modelpkg.manifest import TensorSpec, load_manifest

from ..helpers import IMAGES_DIR, MODEL_DIR, run_inference, stdout_payloads, write_tiny_model

pytestmark = pytest.mark.integration

MODELS = MODEL_DIR.parent
NEO_DIR = MODELS / "efficientnet-lite0-neo-x86_64"


@pytest.fixture
def bundled_agent(socket_path: Path) -> Iterator[AgentClient]:
    server = AgentServer(AgentOptions(socket=socket_path, models_root=MODELS))
    server.start()
    with AgentClient(socket_path, ClientOptions(timeout=30.0)) as client:
        client.wait_until_ready(10.0)
        yield client
    server.stop(grace=1.0)


def sample_batch(folder: Path) -> np.ndarray:
    manifest = load_manifest(folder)
    preprocess = Preprocessor(manifest.preprocess, manifest.input.shape)
    return np.concatenate([preprocess(decode_image(p)) for p in sorted(IMAGES_DIR.glob("*.jpg"))])


def test_a_dynamic_batch_model_classifies_five_frames_in_one_call_as_it_does_one_by_one(
    bundled_agent: AgentClient,
) -> None:
    model = RemoteModel(bundled_agent, load_manifest(MODEL_DIR), "lite0")
    model.ensure_loaded()
    assert model.max_batch is None
    batch = sample_batch(MODEL_DIR)
    together = model.predict(batch)
    assert model.calls == 1 and together.shape == (5, 1000)
    alone = np.concatenate([model.predict(batch[i : i + 1]) for i in range(5)])
    assert model.calls == 6
    assert np.abs(together - alone).max() < 1e-3
    assert (together.argmax(axis=1) == alone.argmax(axis=1)).all()


def test_a_model_compiled_for_one_frame_gets_one_call_per_frame(bundled_agent: AgentClient) -> None:
    model = RemoteModel(bundled_agent, load_manifest(NEO_DIR), "neo")
    model.ensure_loaded()
    assert model.max_batch == 1
    scores = model.predict(sample_batch(NEO_DIR))
    assert model.calls == 5 and scores.shape == (5, 1000)
    reference = RemoteModel(bundled_agent, load_manifest(MODEL_DIR), "lite0")
    reference.ensure_loaded()
    assert (scores.argmax(axis=1) == reference.predict(sample_batch(MODEL_DIR)).argmax(axis=1)).all()


def test_a_fixed_batch_of_two_is_split_and_the_short_last_call_padded(
    tmp_path: Path, socket_path: Path
) -> None:
    folder = write_tiny_model(tmp_path / "models" / "pairs", batch=2)  # y = 2x + 1, input [2, 4]
    server = AgentServer(AgentOptions(socket=socket_path, models_root=tmp_path / "models"))
    server.start()
    manifest = dataclasses.replace(
        load_manifest(MODEL_DIR),
        folder=folder,
        input=TensorSpec("x", "float32", (1, 4)),
        output_name="y",
        num_classes=4,
    )
    try:
        with AgentClient(socket_path, ClientOptions(timeout=10.0)) as client:
            client.wait_until_ready(10.0)
            model = RemoteModel(client, manifest, "pairs")
            model.ensure_loaded()
            assert model.max_batch == 2
            x = np.arange(20, dtype=np.float32).reshape(5, 4)
            y = model.predict(x)
    finally:
        server.stop(grace=1.0)
    assert model.calls == 3
    assert np.array_equal(y, 2 * x + 1)


def test_the_component_with_batch_size_four_publishes_what_it_publishes_frame_by_frame(
    socket_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    single = run_inference(socket_path, batch_size=1, max_frames=5)
    one_by_one = stdout_payloads(capsys.readouterr().out)
    batched = run_inference(socket_path, batch_size=4, max_frames=5)
    in_batches = stdout_payloads(capsys.readouterr().out)
    assert single.active.model.calls == 5 and batched.active.model.calls == 2
    assert [r["frame-id"] for r in in_batches] == [1, 2, 3, 4, 5]
    for a, b in zip(one_by_one, in_batches, strict=True):
        assert a["source"] == b["source"]
        assert [p["Label"] for p in a["inference-results"]] == [p["Label"] for p in b["inference-results"]]


def test_a_batch_larger_than_a_request_may_carry_goes_in_several_calls_and_every_frame_is_classified(
    bundled_agent: AgentClient,
) -> None:
    """Measured before: BatchSize 56-64 of 602 kB float frames never fit the agent's 32 MiB message limit and
    nothing was classified. A call carries at most max_request_bytes of tensor; the rest go in more calls."""
    frame_bytes = sample_batch(MODEL_DIR)[:1].nbytes
    model = RemoteModel(bundled_agent, load_manifest(MODEL_DIR), "lite0", max_request_bytes=2 * frame_bytes)
    model.ensure_loaded()
    batch = np.concatenate([sample_batch(MODEL_DIR)] * 13)  # 65 frames
    scores = model.predict(batch)
    assert scores.shape == (65, 1000) and model.calls == 33  # 32 calls of 2 frames, 1 of 1
    assert (scores.argmax(axis=1) == np.tile(scores[:5].argmax(axis=1), 13)).all()
