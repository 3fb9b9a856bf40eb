"""Native code and models from the models roots (issues 9 and 11): every LoadModel verifies the package
against its manifest before any runtime sees it; folders and files that leave the roots or that others can
write are refused; several roots; a name still loading answers as such. A real agent over a unix socket."""

from __future__ import annotations

import os
import platform
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from agent.server import AgentOptions, AgentServer
from agent_client import AgentClient, ClientOptions
from agent_client.errors import (
    AgentError,
    AgentTimeoutError,
    ConfigError,
    InvalidRequestError,
    ModelLoadingError,
    ModelNotFoundError,
)

from ..agent_fixtures import build_constructor_library, other_uid, write_slow_load_model
from ..helpers import ROOT, agent_process, write_package_manifest, write_tiny_model

pytestmark = pytest.mark.integration

NEO_DIR = ROOT / "artifacts" / "models" / "efficientnet-lite0-neo-x86_64"
X = {"x": np.arange(4, dtype=np.float32).reshape(1, 4)}


def _replace_model(folder: Path, scale: float, target: Path | None = None) -> None:
    """Rewrites model.onnx (in place, or into target) as y = scale * x + 1: same names and shapes, another
    digest."""
    model = onnx.load(str(folder / "model.onnx"))
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([scale], np.float32), "two"))
    onnx.save(model, str(target or folder / "model.onnx"))


def test_a_model_file_replaced_on_disk_is_refused_at_the_next_load(
    client: AgentClient, models_root: Path
) -> None:
    """Before: the replaced file was served after a restart, under the manifest's old sha256."""
    client.load_model("tiny", "tiny")
    _replace_model(models_root / "tiny", 3.0)
    with pytest.raises(InvalidRequestError, match=r"model.onnx has SHA-256 [0-9a-f]{64}, the manifest says"):
        client.load_model("tiny", "tiny")  # even when the name is loaded from that folder already
    (y,) = client.predict("tiny", X)  # the verified model in memory is still the one served
    np.testing.assert_array_equal(y, 2 * X["x"] + 1)
    client.unload_model("tiny")
    with pytest.raises(InvalidRequestError, match="fails its manifest"):
        client.load_model("tiny", "tiny")
    with pytest.raises(ModelNotFoundError):
        client.predict("tiny", X)


def test_a_file_changed_after_the_listing_checks_is_decided_by_the_digest_of_what_was_opened(
    client: AgentClient, models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model is rewritten after the checks that need no read (listing, owners, modes), just before the
    agent opens it: the digest of the file opened, not of what was on disk earlier, decides."""
    import agent.package

    opened: list[str] = []
    open_checked = agent.package._open_checked

    def rewritten_then_opened(folder_fd: int, folder: Path, name: str, trusted: frozenset[int]) -> Any:
        opened.append(name)
        if name == "model.onnx" and folder.name == "tiny":
            _replace_model(folder, 3.0)
        return open_checked(folder_fd, folder, name, trusted)

    monkeypatch.setattr(agent.package, "_open_checked", rewritten_then_opened)
    client.load_model("tiny-dynamic", "tiny-dynamic")
    assert sorted(opened) == ["labels.txt", "model.onnx"]  # once each
    with pytest.raises(InvalidRequestError, match=r"model.onnx has SHA-256 [0-9a-f]{64}, the manifest says"):
        client.load_model("tiny", "tiny")
    with pytest.raises(ModelNotFoundError):
        client.predict("tiny", X)


def test_a_model_file_renamed_over_after_its_hash_is_not_what_the_runtime_loads(
    client: AgentClient, models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime reads the open file that was hashed: a file renamed over the path after the hash (by
    the agent's own user or root: nobody else can write there) is not what gets loaded."""
    import agent.package

    digest = agent.package._digest

    def renamed_over_after_hashing(file: agent.package.PackageFile, where: Path) -> str:
        found = digest(file, where)
        if where.name == "model.onnx":
            other = where.parent.parent / "other.onnx"
            _replace_model(where.parent, 3.0, target=other)
            os.replace(other, where)
        return found

    monkeypatch.setattr(agent.package, "_digest", renamed_over_after_hashing)
    client.load_model("tiny", "tiny")
    (y,) = client.predict("tiny", X)
    np.testing.assert_array_equal(y, 2 * X["x"] + 1)  # the verified model, not the 3x+1 now on disk


def test_a_model_file_written_in_place_while_the_runtime_reads_it_is_refused(
    client: AgentClient, models_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write into the open file between its hash and the end of the load (size or times move) makes the
    load fail with what to do; nothing is served under that name."""
    from agent.backends import onnxruntime_backend

    session = onnxruntime_backend.OrtSession

    def written_while_loading(model: Any, where: str, settings: Any) -> Any:
        loaded = session(model, where, settings)
        _replace_model(models_root / "tiny", 3.0)  # in place: the same file, other bytes
        return loaded

    monkeypatch.setattr(onnxruntime_backend, "OrtSession", written_while_loading)
    with pytest.raises(InvalidRequestError, match=r"model.onnx was written to while the agent loaded it"):
        client.load_model("tiny", "tiny")
    with pytest.raises(ModelNotFoundError):
        client.predict("tiny", X)


def test_no_load_leaves_a_file_open_whatever_its_outcome(client: AgentClient, models_root: Path) -> None:
    """The package's files are held open for the load only: loaded, already loaded, refused by a digest."""
    shutil.copytree(models_root / "tiny", models_root / "broken")
    (models_root / "broken" / "labels.txt").write_text("changed\n")

    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    client.load_model("tiny", "tiny")  # the first load opens what gRPC and ONNX Runtime keep
    before = open_files()
    for _ in range(8):
        client.load_model("tiny", "tiny")  # a no-op: loaded already
        client.unload_model("tiny")
        client.load_model("tiny", "tiny")
        with pytest.raises(InvalidRequestError, match=r"labels\.txt has SHA-256"):
            client.load_model("broken", "broken")
    assert open_files() <= before + 2  # 3 files held by 24 loads would leave dozens


def test_a_model_with_external_data_is_refused_even_when_the_data_is_a_verified_file(
    client: AgentClient, models_root: Path
) -> None:
    """ONNX Runtime would look its external data up beside the path it opened (/proc/self/fd: the agent's
    own open files); it is given an empty folder instead, so such a model does not load."""
    folder = models_root / "external"
    shutil.copytree(models_root / "tiny", folder)
    model = onnx.load(str(folder / "model.onnx"))
    for tensor in model.graph.initializer:  # raw bytes: what external data holds
        tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
    onnx.save_model(
        model,
        str(folder / "model.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    write_package_manifest(folder, "external")  # weights.bin listed with its digest
    assert (folder / "weights.bin").stat().st_size == 8
    with pytest.raises(AgentError, match="loads no model with external data files: save it with its weights"):
        client.load_model("external", "external")
    with pytest.raises(ModelNotFoundError):
        client.predict("external", X)


def test_a_loaded_session_keeps_no_path_to_reload_from(models_root: Path) -> None:
    """ONNX Runtime's provider fallback would reload the model from the path it was given, which names
    another file (or none) once the package is closed: the session keeps neither path nor fallback."""
    from agent.backends import RuntimeSettings, onnxruntime_backend
    from agent.package import read_package

    folder = models_root / "tiny"
    with read_package(models_root, folder, frozenset({os.getuid(), 0})) as package:
        session = onnxruntime_backend.BACKEND.load(package, RuntimeSettings(threads=1))
    ort_session = session._session
    assert getattr(ort_session, "_model_path", None) is None
    assert getattr(ort_session, "_model_bytes", None) is None
    assert ort_session._enable_fallback is False
    (y,) = session.run(X)
    np.testing.assert_array_equal(y, 2 * X["x"] + 1)


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (
            lambda f: (f / "extra.py").write_text("import os"),
            "extra.py is not listed in the manifest's files",
        ),
        (lambda f: (f / "model.onnx").chmod(0o664), r"model.onnx is writable by other users"),
        (lambda f: (f / "labels.txt").unlink(), "labels.txt is listed but missing"),
        (lambda f: os.chown(f / "model.onnx", other_uid(), -1), r"model.onnx belongs to uid \d+ \(nobody\)"),
        (lambda f: os.chown(f / "manifest.json", other_uid(), -1), r"manifest.json belongs to uid \d+"),
        (lambda f: f.chmod(0o777), r"tiny is writable by other users .*chmod go-w"),
        (lambda f: os.chown(f, other_uid(), -1), r"tiny belongs to uid \d+ \(nobody\)"),
    ],
)
def test_a_package_anyone_else_could_have_changed_is_refused(
    client: AgentClient, models_root: Path, tamper: object, problem: str
) -> None:
    assert callable(tamper)
    tamper(models_root / "tiny")
    with pytest.raises(InvalidRequestError, match=problem):
        client.load_model("tiny", "tiny")


def test_a_model_file_that_is_a_symlink_out_of_the_root_is_refused(
    client: AgentClient, models_root: Path, tmp_path: Path
) -> None:
    outside = write_tiny_model(tmp_path / "outside")
    (models_root / "tiny" / "model.onnx").unlink()
    (models_root / "tiny" / "model.onnx").symlink_to(outside / "model.onnx")  # same bytes, same digest
    with pytest.raises(InvalidRequestError, match=r"model\.onnx is a symbolic link"):
        client.load_model("tiny", "tiny")


def test_a_folder_without_a_manifest_says_how_to_write_one(client: AgentClient, models_root: Path) -> None:
    (models_root / "tiny" / "manifest.json").unlink()
    with pytest.raises(InvalidRequestError) as err:
        client.load_model("tiny", "tiny")
    assert f"python -m modelprep manifest {(models_root / 'tiny').resolve()}" in str(err.value)


def _neo_package(folder: Path, compiled_so: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("compiled_model.json", "compiled.params", "compiled.meta"):
        shutil.copy(NEO_DIR / name, folder / name)
    shutil.copy(compiled_so, folder / "compiled.so")
    write_package_manifest(folder, "neo", "neo", "compiled.so")
    return folder


def test_a_compiled_so_that_does_not_match_its_digest_is_never_dlopened(
    client: AgentClient, models_root: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "constructor-ran"
    planted = build_constructor_library(tmp_path / "planted.so", marker)
    benign = build_constructor_library(tmp_path / "benign.so", tmp_path / "benign-ran")
    folder = _neo_package(models_root / "neo", benign)
    shutil.copy(planted, folder / "compiled.so")  # swapped after the manifest was written
    with pytest.raises(InvalidRequestError, match=r"compiled.so has SHA-256 [0-9a-f]{64}, the manifest says"):
        client.load_model("neo", "neo")
    assert not marker.exists()
    assert not (tmp_path / "benign-ran").exists()


@pytest.mark.skipif(platform.machine() != "x86_64", reason="dlr==1.6.0 bundles libdlr.so for x86_64 only")
def test_the_constructor_marker_does_show_a_dlopen(
    client: AgentClient, models_root: Path, tmp_path: Path
) -> None:
    """The control for the test above: with a matching digest DLR dlopens the library and its constructor
    writes the marker (then DLR fails: it is no TVM module)."""
    marker = tmp_path / "constructor-ran"
    _neo_package(models_root / "neo", build_constructor_library(tmp_path / "planted.so", marker))
    with pytest.raises(Exception, match="DLR could not load"):
        client.load_model("neo", "neo")
    assert marker.read_text() == "constructor ran\n"


@pytest.fixture
def two_roots(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "artifacts-unarchived", tmp_path / "work"
    write_tiny_model(first / "a")
    write_tiny_model(second / "b", batch="N")
    return first, second


def test_urls_may_resolve_inside_any_of_several_models_roots(
    two_roots: tuple[Path, Path], socket_path: Path
) -> None:
    first, second = two_roots
    server = AgentServer(AgentOptions(socket=socket_path, models_root=(first, second)))
    server.start()
    try:
        with AgentClient(socket_path, ClientOptions(timeout=5)) as client:
            assert client.load_model(first / "a", "a").url == str((first / "a").resolve())
            assert client.load_model("b", "b").url == str(
                (second / "b").resolve()
            )  # relative: tried in order
            with pytest.raises(InvalidRequestError, match="outside the models roots"):
                client.load_model(first.parent, "c")
    finally:
        server.stop(grace=1.0)


def test_models_root_may_be_given_more_than_once_on_the_command_line(
    two_roots: tuple[Path, Path], socket_path: Path
) -> None:
    first, second = two_roots
    with (
        agent_process(socket_path, first, "--models-root", str(second), "--load", f"b={second / 'b'}"),
        AgentClient(socket_path, ClientOptions(timeout=5)) as client,
    ):
        assert [m.url for m in client.list_models()] == [str((second / "b").resolve())]
        assert client.load_model("a", "a").name == "a"


def test_a_models_root_others_may_write_is_refused_at_start(tmp_path: Path, socket_path: Path) -> None:
    root = tmp_path / "models"
    write_tiny_model(root / "tiny")
    root.chmod(0o777)
    with pytest.raises(ConfigError, match=r"models root .* is writable by other users"):
        AgentOptions(socket=socket_path, models_root=root)


@pytest.fixture
def slow_load_agent(tmp_path: Path, socket_path: Path) -> Iterator[AgentServer]:
    write_slow_load_model(tmp_path / "models" / "slow")
    server = AgentServer(AgentOptions(socket=socket_path, models_root=tmp_path / "models"))
    server.start()
    yield server
    server.stop(grace=1.0)


def test_a_name_still_loading_answers_still_loading_to_every_call(slow_load_agent: AgentServer) -> None:
    """Before: ALREADY_EXISTS to a second LoadModel, then NOT_FOUND to DescribeModel (the component
    exited)."""
    socket = slow_load_agent.options.socket
    with (
        AgentClient(socket, ClientOptions(timeout=5)) as first,
        AgentClient(socket, ClientOptions(timeout=5)) as other,
    ):
        loaded: list[object] = []
        loader = threading.Thread(target=lambda: loaded.append(first.load_model("slow", "slow")))
        loader.start()
        seen: list[str] = []
        while loader.is_alive() and not seen:
            try:
                other.describe_model("slow")
            except ModelLoadingError as exc:
                seen.append(str(exc))
            except ModelNotFoundError:
                time.sleep(0.005)  # the load has not got past verification yet
        assert seen and "is still loading from" in seen[0] and "retry in a moment" in seen[0]
        for call in (
            lambda: other.load_model("slow", "slow"),
            lambda: other.predict("slow", X),
            lambda: other.unload_model("slow"),
        ):
            with pytest.raises(ModelLoadingError):
                call()
        loader.join(120)
        assert loaded and other.load_model("slow", "slow") == loaded[0]
    assert isinstance(ModelLoadingError("x"), AgentTimeoutError)  # the component's retry-later policy


def test_loadmodel_has_its_own_longer_deadline(slow_load_agent: AgentServer) -> None:
    socket = slow_load_agent.options.socket
    too_slow = pytest.raises(AgentTimeoutError, match=r"ClientOptions\.load_timeout")
    with AgentClient(socket, ClientOptions(timeout=5, load_timeout=0.05)) as hasty, too_slow:
        hasty.load_model("slow", "slow")
    with AgentClient(socket, ClientOptions(timeout=0.05, load_timeout=60)) as patient:
        while True:  # the abandoned load may still be running: that is "still loading", never NOT_FOUND
            try:
                assert patient.load_model("slow", "slow").name == "slow"
                break
            except ModelLoadingError:
                pass
