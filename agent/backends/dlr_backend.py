"""DLR backend: a Neo-compiled package (compiled.so, compiled_model.json, compiled.params; .meta optional).

DLR dlopens compiled.so, and the shared object's constructors run in the agent at that moment, so it must be
exactly the verified file. DLR only takes a folder path, so the package's verified files are copied from the
files agent.package hashed (held open) to a private folder (mkdtemp: mode 0700, files 0600, under TMPDIR,
which must allow executing mapped files, i.e. not be mounted noexec), read back and hashed again against the
manifest, loaded from there, and the folder is deleted once the model is in memory. A file whose digest does
not match is never dlopened.

Loads SageMaker Neo output and the folders `python -m modelprep neo` writes, with `dlr==1.6.0` (the last
wheel bundling libdlr.so, a TVM 0.8 graph-executor runtime). Always the libdlr.so of the installed wheel,
never one shipped inside a model folder.

DLR phones home (device details at its second import, a hashed model name per load, posted without a
timeout). This backend stops that by default: before the first `import dlr` it puts a no-op module in
`sys.modules["dlr.counter"]`. Set EDGECLASSIFIER_DLR_PHONE_HOME=1 in the agent's environment to leave
DLR's counter as it ships.

Threads: TVM's thread pool reads TVM_NUM_THREADS once per process, so the first DLR model loaded decides
the thread count for all DLR models of the agent.

DLR 1.6 adds a top-level `test` package to site-packages; it sits behind the standard library's on
sys.path and nothing here imports `test`, so it is harmless to the agent.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agent_client.errors import BackendError, BackendUnavailableError, ManifestError, RequestCancelledError
from agent_client.tensors import TensorInfo
from modelpkg.manifest import sha256_of

from . import Cancellation, RuntimeSettings

if TYPE_CHECKING:
    from ..package import VerifiedPackage

logger = logging.getLogger(__name__)

REQUIRED_FILES = ("compiled.so", "compiled_model.json", "compiled.params")
OPTIONAL_FILES = ("compiled.meta",)
PHONE_HOME_ENV = "EDGECLASSIFIER_DLR_PHONE_HOME"
_COUNTER = "dlr.counter"


def _no_phone_home(func: Any) -> Any:
    return func


def counter_stub() -> types.ModuleType:
    """The module put in place of dlr.counter: its decorator returns the function unchanged."""
    stub = types.ModuleType(_COUNTER, "no-op stand-in for DLR's phone-home counter (edgeclassifier)")
    stub.call_phone_home = _no_phone_home  # type: ignore[attr-defined]
    return stub


def phone_home_allowed() -> bool:
    return os.environ.get(PHONE_HOME_ENV, "") == "1"


def import_dlr() -> Any:
    """`import dlr`, with its phone-home counter replaced by a no-op unless explicitly allowed."""
    if not phone_home_allowed():
        counter = sys.modules.get(_COUNTER)
        if (
            sys.modules.get("dlr") is not None
            and getattr(counter, "call_phone_home", None) is not _no_phone_home
        ):
            # Imported earlier by someone else: silence the per-load counter at least.
            phone_home = sys.modules.get(f"{_COUNTER}.phone_home")
            if phone_home is not None:
                phone_home.MGR = None  # type: ignore[attr-defined]
            logger.warning("dlr was imported before the agent could disable its phone-home counter")
        elif counter is None:
            sys.modules[_COUNTER] = counter_stub()
    try:
        import dlr
    except ImportError as exc:
        raise BackendUnavailableError(
            "the dlr backend needs DLR: pip install 'gg-edge-classifier[dlr]' (dlr==1.6.0)"
        ) from exc
    return dlr


def graph_shapes(graph_json: dict[str, Any]) -> tuple[dict[str, tuple[int, ...]], list[tuple[int, ...]]]:
    """Input shapes by name and output shapes in order, from a TVM graph executor JSON."""
    try:
        nodes, row_ptr = graph_json["nodes"], graph_json["node_row_ptr"]
        shapes = graph_json["attrs"]["shape"][1]
        inputs = {
            nodes[i]["name"]: tuple(shapes[row_ptr[i]])
            for i in graph_json["arg_nodes"]
            if nodes[i]["op"] == "null"
        }
        outputs = [tuple(shapes[row_ptr[node] + index]) for node, index, *_ in graph_json["heads"]]
    except (KeyError, IndexError, TypeError) as exc:
        raise BackendError(f"compiled_model.json is not a TVM graph executor graph ({exc!r})") from exc
    return inputs, outputs


def write_private_copy(package: VerifiedPackage, folder: Path) -> None:
    """Writes the Neo files of package into folder (private, new files 0600), then reads each back and
    checks it against the manifest digest: ManifestError if any differs."""
    digests = dict(package.manifest.files)
    for name in (*REQUIRED_FILES, *OPTIONAL_FILES):
        if name not in package.files:
            if name in OPTIONAL_FILES:
                continue
            package.content(name)  # ManifestError naming the missing file
        fd = os.open(
            folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            package.copy(name, fd)
        finally:
            os.close(fd)
        if sha256_of(folder / name) != digests[name]:
            raise ManifestError(
                f"the private copy of {package.folder / name} does not match its manifest digest; it was "
                f"not loaded (is {folder} being tampered with?)"
            )


def _load_private_copy(dlr: Any, package: VerifiedPackage) -> Any:
    """DLRModel over a verified private copy of the Neo files alone (DLR also refuses a folder holding a
    second *.json such as our manifest.json), deleted once the model is in memory."""
    with tempfile.TemporaryDirectory(prefix="edgeclassifier-dlr-") as tmp:
        write_private_copy(package, Path(tmp))
        return dlr.DLRModel(tmp, "cpu", 0, use_default_dlr=True)


class DlrSession:
    def __init__(self, package: VerifiedPackage, settings: RuntimeSettings) -> None:
        folder = package.folder
        os.environ["TVM_NUM_THREADS"] = str(settings.threads)
        try:
            graph = json.loads(package.content("compiled_model.json"))
        except ValueError as exc:
            raise BackendError(f"cannot read {folder / 'compiled_model.json'} as JSON: {exc}") from exc
        input_shapes, output_shapes = graph_shapes(graph)
        dlr = import_dlr()
        try:
            model = _load_private_copy(dlr, package)
            input_names = list(model.get_input_names())
            input_dtypes = list(model.get_input_dtypes())
            output_dtypes = list(model.get_output_dtypes())
            try:
                output_names = list(model.get_output_names())
            except Exception:  # DLR raises plain errors when compiled.meta names no outputs
                output_names = [f"output{i}" for i in range(len(output_shapes))]
        except ManifestError:
            raise
        except Exception as exc:  # DLR raises plain Exception/ValueError for everything
            if type(exc).__name__ == "DLRLibraryNotFound":
                raise BackendUnavailableError(
                    f"DLR found no libdlr.so for {os.uname().machine}: dlr==1.6.0 bundles one only in its "
                    f"x86_64 wheel; elsewhere build libdlr.so from neo-ai-dlr 1.6 and put it in "
                    f"{sys.prefix}/dlr/"
                ) from exc
            raise BackendError(
                f"DLR could not load {folder}: {str(exc) or type(exc).__name__}; the folder must be "
                f"compiled for this CPU "
                f"({os.uname().machine}) by a TVM whose graph executor DLR 1.6 reads, and TMPDIR "
                f"({tempfile.gettempdir()}) must not be mounted noexec"
            ) from exc
        weights = set(model._impl.weight_names) if hasattr(model, "_impl") else set()
        self.inputs = tuple(
            TensorInfo(name=n, dtype=np.dtype(d), shape=input_shapes.get(n, (-1,)))
            for n, d in zip(input_names, input_dtypes, strict=True)
            if n not in weights
        )
        self.outputs = tuple(
            TensorInfo(name=n, dtype=np.dtype(d), shape=s)
            for n, d, s in zip(output_names, output_dtypes, output_shapes, strict=True)
        )
        self._model: Any = model
        self._lock = threading.Lock()  # one graph executor: set_input/run/get_output must not interleave

    def run(
        self, inputs: Mapping[str, np.ndarray], cancel: Cancellation | None = None
    ) -> Sequence[np.ndarray]:
        with self._lock:  # DLR cannot stop a run: a caller gone while this waited for the lock is skipped
            if cancel is not None and cancel.cancelled:
                raise RequestCancelledError("the caller went away before DLR could run the request")
            model = self._model
            if model is None:
                raise BackendError("the model was unloaded while a request was running; load it again")
            try:
                outputs = model.run({name: np.ascontiguousarray(a) for name, a in inputs.items()})
            except Exception as exc:  # DLR's runtime errors carry no stable type
                raise BackendError(f"DLR failed to run the model: {exc}") from exc
        return [np.asarray(o).reshape(info.shape) for o, info in zip(outputs, self.outputs, strict=True)]

    def close(self) -> None:
        with self._lock:
            self._model = None


class DlrBackend:
    name = "dlr"

    def warm_up(self) -> None:
        try:
            import_dlr()
        except BackendUnavailableError:
            logger.debug("DLR is not installed: nothing to warm up")

    def load(self, package: VerifiedPackage, settings: RuntimeSettings) -> DlrSession:
        logger.info("loading %s with DLR (%d threads)", package.folder, settings.threads)
        return DlrSession(package, settings)


BACKEND = DlrBackend()
