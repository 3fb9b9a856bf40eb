"""The DLR backend without DLR's runtime: backend choice, the private copy, graph shapes, the counter stub."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from agent import backends
from agent.backends import dlr_backend
from agent.package import VerifiedPackage, read_package
from agent_client.errors import BackendError, BackendUnavailableError, ManifestError
from agent_client.sockets import default_trusted_uids

from ..helpers import write_package_manifest

NEO_FILES = ("compiled.so", "compiled_model.json", "compiled.params", "compiled.meta")


def neo_package(folder: Path, *names: str) -> VerifiedPackage:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(f"bytes of {name}".encode())
    write_package_manifest(folder, "neo", "neo", "compiled.so")
    return read_package(folder, folder, default_trusted_uids())


def test_the_manifest_format_picks_the_backend() -> None:
    assert backends.for_format("neo").name == "dlr"
    assert backends.for_format("onnx").name == "onnxruntime"
    with pytest.raises(BackendError, match=r"formats: neo \(dlr\), onnx \(onnxruntime\)"):
        backends.for_format("tflite")


def test_dlr_is_registered_with_its_extra() -> None:
    assert "dlr" in backends.names()
    assert backends.get("dlr").name == "dlr"


def test_the_private_copy_holds_the_neo_files_alone_owner_only(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir(mode=0o700)
    with neo_package(tmp_path / "neo", *NEO_FILES) as package:
        dlr_backend.write_private_copy(package, copy)
    assert sorted(p.name for p in copy.iterdir()) == sorted(NEO_FILES)  # no manifest.json, no labels.txt
    assert {stat.S_IMODE(p.stat().st_mode) for p in copy.iterdir()} == {0o600}
    assert (copy / "compiled.so").read_bytes() == b"bytes of compiled.so"


def test_a_neo_package_without_params_names_the_missing_file(tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir(mode=0o700)
    with (
        neo_package(tmp_path / "neo", "compiled.so", "compiled_model.json") as package,
        pytest.raises(ManifestError, match=r"does not list compiled\.params"),
    ):
        dlr_backend.write_private_copy(package, copy)


def test_graph_shapes_reads_inputs_and_outputs_of_a_graph_executor_json() -> None:
    graph = {
        "nodes": [
            {"op": "null", "name": "input"},
            {"op": "null", "name": "p0"},
            {"op": "tvm_op", "name": "dense"},
        ],
        "arg_nodes": [0, 1],
        "node_row_ptr": [0, 1, 2, 3],
        "heads": [[2, 0, 0]],
        "attrs": {"shape": ["list_shape", [[1, 3, 224, 224], [1000, 1280], [1, 1000]]]},
    }
    inputs, outputs = dlr_backend.graph_shapes(graph)
    assert inputs == {"input": (1, 3, 224, 224), "p0": (1000, 1280)}
    assert outputs == [(1, 1000)]


def test_graph_shapes_rejects_other_json() -> None:
    with pytest.raises(BackendError, match="graph executor"):
        dlr_backend.graph_shapes({"nodes": []})


def test_the_counter_stub_leaves_functions_unchanged() -> None:
    stub = dlr_backend.counter_stub()

    def load() -> str:
        return "loaded"

    assert stub.call_phone_home(load) is load
    assert stub.__name__ == "dlr.counter"


def test_phone_home_is_off_unless_explicitly_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dlr_backend.PHONE_HOME_ENV, raising=False)
    assert not dlr_backend.phone_home_allowed()
    monkeypatch.setenv(dlr_backend.PHONE_HOME_ENV, "yes")
    assert not dlr_backend.phone_home_allowed()
    monkeypatch.setenv(dlr_backend.PHONE_HOME_ENV, "1")
    assert dlr_backend.phone_home_allowed()


def test_missing_dlr_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(dlr_backend.PHONE_HOME_ENV, raising=False)
    for name in [n for n in sys.modules if n == "dlr" or n.startswith("dlr.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dlr", None)  # makes `import dlr` raise ImportError
    with pytest.raises(BackendUnavailableError, match=r"gg-edge-classifier\[dlr\]"):
        dlr_backend.import_dlr()
    assert sys.modules["dlr.counter"].call_phone_home is dlr_backend._no_phone_home
