"""The committed Neo-format x86_64 folder through DLR 1.6: agreement with ONNX Runtime FP32, the agent picking
DLR from the folder over a unix socket, the unchanged component on top, and no outbound connection."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from agent.backends import RuntimeSettings
from agent.package import VerifiedPackage, read_package
from agent.server import AgentOptions, AgentServer
from agent_client import AgentClient, ClientOptions
from agent_client.sockets import default_trusted_uids
from component.classify import RemoteModel
from component.preprocess import Preprocessor, decode_image
from modelpkg.manifest import load_labels, load_manifest, verify_sha256

from ..helpers import IMAGES_DIR, MODEL_DIR, ROOT, agent_process, run_module

NEO_DIR = ROOT / "artifacts" / "models" / "efficientnet-lite0-neo-x86_64"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the committed compiled.so is for x86_64"),
]


def _verified(folder: Path) -> VerifiedPackage:
    return read_package(folder, folder, default_trusted_uids())


def _inputs() -> dict[str, np.ndarray]:
    manifest = load_manifest(MODEL_DIR)
    preprocess = Preprocessor(manifest.preprocess, manifest.input.shape)
    return {p.name: preprocess(decode_image(p)) for p in sorted(IMAGES_DIR.glob("*.jpg"))}


@pytest.fixture(scope="module")
def fp32_logits() -> dict[str, np.ndarray]:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(MODEL_DIR / "model.onnx"), providers=["CPUExecutionProvider"])
    return {name: session.run(None, {"input": x})[0] for name, x in _inputs().items()}


def test_dlr_agrees_with_onnxruntime_fp32_on_every_sample_image(fp32_logits: dict[str, np.ndarray]) -> None:
    from agent import backends

    backend = backends.for_format(load_manifest(NEO_DIR).format)
    assert backend.name == "dlr"
    with _verified(NEO_DIR) as package:
        session = backend.load(package, RuntimeSettings(threads=2))
    try:
        # the same input contract as the ONNX packages: uint8 NHWC pixels, normalised in the graph
        assert [(t.name, str(t.dtype), t.shape) for t in session.inputs] == [
            ("input", "uint8", (1, 224, 224, 3))
        ]
        assert [(t.name, t.shape) for t in session.outputs] == [("logits", (1, 1000))]
        worst = 0.0
        for name, x in _inputs().items():
            (logits,) = session.run({"input": x})
            assert int(np.argmax(logits)) == int(np.argmax(fp32_logits[name])), name
            worst = max(worst, float(np.abs(logits - fp32_logits[name]).max()))
    finally:
        session.close()
    print(f"max |DLR - ONNX Runtime FP32| logit difference over the sample images: {worst:.2e}")
    assert worst < 1e-3


@pytest.fixture
def neo_agent(tmp_path: Path, socket_path: Path) -> Iterator[AgentServer]:
    server = AgentServer(AgentOptions(socket=socket_path, models_root=NEO_DIR.parent))
    server.start()
    yield server
    server.stop(grace=1.0)


def test_the_agent_picks_dlr_for_the_neo_folder_and_the_component_model_works_unchanged(
    neo_agent: AgentServer, fp32_logits: dict[str, np.ndarray]
) -> None:
    manifest = load_manifest(NEO_DIR)
    verify_sha256(manifest)
    labels = load_labels(manifest)
    with AgentClient(neo_agent.options.socket, ClientOptions(timeout=10.0)) as client:
        client.wait_until_ready(5.0)
        model = RemoteModel(client, manifest, "neo")
        model.ensure_loaded()
        assert neo_agent.registry.get("neo").backend == "dlr"
        for name, x in _inputs().items():
            logits = model.predict(x)
            assert labels[int(np.argmax(logits))] == labels[int(np.argmax(fp32_logits[name]))], name


def test_the_component_classifies_the_samples_with_the_neo_folder(socket_path: Path) -> None:
    images = sorted(IMAGES_DIR.glob("*.jpg"))
    with agent_process(socket_path, NEO_DIR.parent):
        done = run_module(
            "component",
            "--publisher",
            "stdout",
            "--model-path",
            str(NEO_DIR),
            "--agent-socket",
            str(socket_path),
            "--interval",
            "0",
            "--max-frames",
            str(len(images)),
        )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    results = [r for r in lines if r["topic"] == "gg/sageMakerEdgeManager/image-classification"]
    top1 = {Path(r["payload"]["source"]).name: r["payload"]["inference-results"][0]["Label"] for r in results}
    assert top1 == {
        "camera.jpg": "tripod",
        "chelsea.jpg": "tiger cat",
        "coffee.jpg": "espresso",
        "motorcycle.jpg": "moped",
        "rocket.jpg": "missile",
    }
    assert all(r["payload"]["model"]["name"] == "efficientnet-lite0-neo-x86-64" for r in results)


def test_loading_twice_through_dlr_attempts_no_network_connection(tmp_path: Path) -> None:
    script = (
        "from pathlib import Path\n"
        "from agent.backends import RuntimeSettings, dlr_backend\n"
        "from agent.package import read_package\n"
        "from agent_client.sockets import default_trusted_uids\n"
        f"folder = Path({str(NEO_DIR)!r})\n"
        "for _ in range(2):\n"
        "    with read_package(folder, folder, default_trusted_uids()) as package:\n"
        "        dlr_backend.BACKEND.load(package, RuntimeSettings(threads=1)).close()\n"
        "import sys\n"
        "assert sys.modules['dlr.counter'].call_phone_home is dlr_backend._no_phone_home\n"
        "assert 'dlr.counter.phone_home' not in sys.modules\n"
    )
    trace = tmp_path / "trace"
    env = {k: v for k, v in os.environ.items() if k != "EDGECLASSIFIER_DLR_PHONE_HOME"}
    done = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=connect", "-o", str(trace), sys.executable, "-c", script],
        cwd=ROOT,
        env=dict(env, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr  # scripts/test installs strace
    calls = [line for line in trace.read_text().splitlines() if "connect(" in line]
    assert not [c for c in calls if "AF_INET" in c], calls


def test_a_folder_compiled_for_another_cpu_fails_with_a_backend_error() -> None:
    from agent.backends import dlr_backend
    from agent_client.errors import BackendError

    with (
        pytest.raises(BackendError, match=r"must be compiled for this CPU \(x86_64\)"),
        _verified(NEO_DIR.parent / "efficientnet-lite0-neo-aarch64") as package,
    ):
        dlr_backend.BACKEND.load(package, RuntimeSettings(threads=1))
