"""Loaded models by name: path checks, backend choice, load/unload under one lock."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from agent_client.errors import InvalidRequestError, ModelAlreadyLoadedError, ModelNotFoundError

from . import backends
from .backends import Session

logger = logging.getLogger(__name__)

MODEL_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")


@dataclass(frozen=True)
class LoadedModel:
    name: str
    url: str
    folder: Path
    backend: str
    session: Session


class ModelRegistry:
    """Models the agent serves. Loading happens outside the lock so a slow load never blocks Predict."""

    def __init__(self, models_root: Path, threads: int) -> None:
        self.models_root = models_root.resolve()
        self.threads = threads
        self._models: dict[str, LoadedModel] = {}
        self._loading: set[str] = set()
        self._lock = threading.Lock()

    def resolve_folder(self, url: str) -> Path:
        """The model folder for a LoadModel url: absolute or relative to the models root, never outside it."""
        if not url:
            raise InvalidRequestError("LoadModel needs a url: the model folder's path")
        folder = (self.models_root / url).resolve()
        if not folder.is_relative_to(self.models_root):
            raise InvalidRequestError(
                f"model folder {url!r} is outside the models root {self.models_root}; "
                f"place the model under it or start the agent with a different --models-root"
            )
        if not folder.is_dir():
            raise InvalidRequestError(f"model folder {folder} does not exist or is not a folder")
        return folder

    def load(self, url: str, name: str) -> LoadedModel:
        if not MODEL_NAME.fullmatch(name):
            raise InvalidRequestError(
                f"model name {name!r} is invalid: use letters, digits and single inner dashes "
                f"(^[a-zA-Z0-9](-*[a-zA-Z0-9])*$)"
            )
        folder = self.resolve_folder(url)
        with self._lock:
            if name in self._models or name in self._loading:
                raise ModelAlreadyLoadedError(
                    f"a model named {name!r} is already loaded; UnLoadModel it first"
                )
            self._loading.add(name)
        try:
            backend = backends.detect(folder)
            session = backend.load(folder, self.threads)
        finally:
            with self._lock:
                self._loading.discard(name)
        model = LoadedModel(name=name, url=url, folder=folder, backend=backend.name, session=session)
        with self._lock:
            self._models[name] = model
        logger.info("loaded model %s from %s with %s", name, folder, backend.name)
        return model

    def get(self, name: str) -> LoadedModel:
        with self._lock:
            model = self._models.get(name)
        if model is None:
            raise ModelNotFoundError(f"no model named {name!r} is loaded; call LoadModel first")
        return model

    def unload(self, name: str) -> None:
        with self._lock:
            model = self._models.pop(name, None)
        if model is None:
            raise ModelNotFoundError(f"no model named {name!r} is loaded")
        model.session.close()
        logger.info("unloaded model %s", name)

    def all(self) -> tuple[LoadedModel, ...]:
        with self._lock:
            return tuple(self._models.values())

    def unload_all(self) -> None:
        for model in self.all():
            self.unload(model.name)
