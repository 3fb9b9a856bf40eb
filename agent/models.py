"""Loaded models by name: url resolution inside the models roots, package verification, load/unload.

Names and folders (LoadModel semantics):
- a url is a model folder: absolute, or relative to the models roots (tried in the order given, the first
  that holds it wins); after symbolic links are followed it must lie inside one of the roots;
- the agent reports `Model.url` as that resolved absolute folder;
- loading a name already loaded from the same resolved folder with the same manifest sha256 succeeds and
  returns the loaded model (idempotent: a component restarting needs no special case); from another folder,
  or after the package in that folder changed, it is ALREADY_EXISTS naming both;
- a name whose load is still running answers ModelLoadingError (ABORTED, "still loading, retry") to
  LoadModel, Predict, DescribeModel and UnLoadModel alike.
Every LoadModel verifies the package again (agent.package), also when it then turns out to be loaded already.
Loading happens outside the lock, so a slow load never blocks Predict.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent_client.errors import (
    InvalidRequestError,
    ModelAlreadyLoadedError,
    ModelLoadingError,
    ModelNotFoundError,
)

from . import backends
from .backends import RuntimeSettings, Session
from .package import VerifiedPackage, read_package, trim_heap

logger = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
MAX_NAME_LENGTH = 128
MAX_URL_LENGTH = 4096


@dataclass(frozen=True)
class LoadedModel:
    name: str
    folder: Path  # resolved, inside a models root
    sha256: str  # the manifest's model digest
    backend: str
    session: Session

    @property
    def url(self) -> str:
        return str(self.folder)


def check_model_name(name: str, what: str = "model name") -> str:
    if len(name) > MAX_NAME_LENGTH or not MODEL_NAME.fullmatch(name):
        raise InvalidRequestError(
            f"{what} {name[:MAX_NAME_LENGTH]!r} is invalid: use up to {MAX_NAME_LENGTH} letters, digits and "
            f"single inner dashes (^[a-zA-Z0-9](-*[a-zA-Z0-9])*$)"
        )
    return name


class ModelRegistry:
    """Models the agent serves; see the module docstring for the LoadModel rules."""

    def __init__(
        self, roots: Sequence[Path], settings: RuntimeSettings, trusted_uids: frozenset[int]
    ) -> None:
        self.roots = tuple(root.resolve() for root in roots)
        self.settings = settings
        self.trusted_uids = trusted_uids
        self._models: dict[str, LoadedModel] = {}
        self._loading: dict[str, Path] = {}
        self._lock = threading.Lock()

    def resolve_folder(self, url: str) -> tuple[Path, Path]:
        """(models root, resolved folder) of a LoadModel url; InvalidRequestError outside every root."""
        if not url:
            raise InvalidRequestError("LoadModel needs a url: the model folder's path")
        if len(url) > MAX_URL_LENGTH or "\0" in url:
            raise InvalidRequestError("LoadModel url is not a usable path (too long or holding a NUL byte)")
        candidates = [Path(url)] if Path(url).is_absolute() else [root / url for root in self.roots]
        try:
            existing = [c.resolve() for c in candidates if c.exists()]
            folder = existing[0] if existing else candidates[0].resolve()
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
            raise InvalidRequestError(f"model folder {url!r} cannot be resolved: {exc}") from exc
        root = next((r for r in self.roots if folder.is_relative_to(r)), None)
        if root is None:
            raise InvalidRequestError(
                f"model folder {url!r} ({folder}) is outside the models roots "
                f"({', '.join(map(str, self.roots))}); place the model under one of them or start the agent "
                f"with another --models-root"
            )
        if not folder.is_dir():
            raise InvalidRequestError(f"model folder {folder} does not exist or is not a folder")
        return root, folder

    def load(self, url: str, name: str) -> LoadedModel:
        check_model_name(name)
        root, folder = self.resolve_folder(url)
        with self._lock:
            self._check_free(name, folder)
        with read_package(root, folder, self.trusted_uids) as package:
            model = self._load_package(name, folder, package)
        trim_heap()
        return model

    def _load_package(self, name: str, folder: Path, package: VerifiedPackage) -> LoadedModel:
        with self._lock:
            loaded = self._check_free(name, folder)
            if loaded is not None:
                if loaded.sha256 == package.sha256:
                    logger.info("model %s is already loaded from %s; LoadModel is a no-op", name, folder)
                    return loaded
                raise ModelAlreadyLoadedError(
                    f"a model named {name!r} is loaded from {folder} with sha256 {loaded.sha256}, but the "
                    f"package there now has sha256 {package.sha256}; UnLoadModel {name!r} first to load it"
                )
            self._loading[name] = folder
        try:
            backend = backends.for_format(package.manifest.format)
            session = backend.load(package, self.settings)
            try:
                package.check_unchanged()  # a file written to while the runtime read it is not served
            except BaseException:
                session.close()
                raise
        except BaseException:
            with self._lock:
                self._loading.pop(name, None)
            raise
        model = LoadedModel(
            name=name, folder=folder, sha256=package.sha256, backend=backend.name, session=session
        )
        with self._lock:  # loading -> loaded in one step: no moment where the name is unknown
            self._loading.pop(name, None)
            self._models[name] = model
        logger.info("loaded model %s from %s with %s (sha256 %s)", name, folder, backend.name, model.sha256)
        return model

    def _check_free(self, name: str, folder: Path) -> LoadedModel | None:
        """Under the lock: the model loaded under name from folder (None if the name is free); raises if
        the name is loading or taken by another folder."""
        if name in self._loading:
            raise ModelLoadingError(
                f"model {name!r} is still loading from {self._loading[name]}; retry in a moment"
            )
        loaded = self._models.get(name)
        if loaded is not None and loaded.folder != folder:
            raise ModelAlreadyLoadedError(
                f"a model named {name!r} is already loaded from {loaded.folder}, and this request asks for "
                f"{folder}; UnLoadModel {name!r} first or pick another name"
            )
        return loaded

    def get(self, name: str) -> LoadedModel:
        with self._lock:
            model = self._models.get(name)
            loading = self._loading.get(name)
        if model is None:
            if loading is not None:
                raise ModelLoadingError(f"model {name!r} is still loading from {loading}; retry in a moment")
            raise ModelNotFoundError(
                f"no model named {name[:MAX_NAME_LENGTH]!r} is loaded; call LoadModel first"
            )
        return model

    def unload(self, name: str) -> None:
        with self._lock:
            model = self._models.pop(name, None)
            loading = self._loading.get(name)
        if model is None:
            if loading is not None:
                raise ModelLoadingError(f"model {name!r} is still loading from {loading}; retry in a moment")
            raise ModelNotFoundError(f"no model named {name[:MAX_NAME_LENGTH]!r} is loaded")
        model.session.close()
        logger.info("unloaded model %s", name)

    def all(self) -> tuple[LoadedModel, ...]:
        with self._lock:
            return tuple(self._models.values())

    def unload_all(self) -> None:
        for model in self.all():
            self.unload(model.name)
