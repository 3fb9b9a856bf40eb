"""The component's model on the agent: load it, predict, and reload it after an agent restart.

The model folder's manifest says which input to feed and which output to read; the agent's own
description of the loaded model is checked against it once per load, so a manifest that does not match
its model fails loudly at start instead of producing wrong classes.
"""

from __future__ import annotations

import logging

import numpy as np

from agent_client import AgentClient, ModelInfo
from agent_client.errors import ManifestError, ModelAlreadyLoadedError, ModelNotFoundError

from .manifest import ModelManifest

logger = logging.getLogger(__name__)


class RemoteModel:
    def __init__(self, client: AgentClient, manifest: ModelManifest, name: str) -> None:
        self.client = client
        self.manifest = manifest
        self.name = name
        self._output_index = 0
        self.loads = 0

    @property
    def url(self) -> str:
        return str(self.manifest.folder)

    def ensure_loaded(self) -> ModelInfo:
        """Loads the model folder under self.name; accepts the same folder already loaded by someone else."""
        try:
            info = self.client.load_model(self.url, self.name)
            logger.info("agent loaded model %s from %s", self.name, self.url)
        except ModelAlreadyLoadedError:
            info = self.client.describe_model(self.name)
            if info.url != self.url:
                raise ManifestError(
                    f"the agent already serves a model named {self.name!r} from {info.url}, not {self.url}; "
                    f"set ModelName to another name"
                ) from None
            logger.info("agent already serves model %s from %s", self.name, self.url)
        self._check(info)
        self.loads += 1
        return info

    def predict(self, tensor: np.ndarray) -> np.ndarray:
        """The model's scores for one input batch. Reloads once if the agent forgot the model (restart)."""
        inputs = {self.manifest.input.name: tensor}
        try:
            outputs = self.client.predict(self.name, inputs)
        except ModelNotFoundError:
            logger.warning("the agent no longer has model %s (restarted?); loading it again", self.name)
            self.ensure_loaded()
            outputs = self.client.predict(self.name, inputs)
        return outputs[self._output_index]

    def _check(self, info: ModelInfo) -> None:
        spec = self.manifest.input
        found = {t.name: t for t in info.inputs}
        if spec.name not in found:
            raise ManifestError(
                f"manifest input {spec.name!r} is not an input of the loaded model "
                f"(inputs: {', '.join(found)}); fix {self.manifest.folder / 'manifest.json'}"
            )
        if not found[spec.name].accepts_shape(tuple(spec.shape)) or str(found[spec.name].dtype) != spec.dtype:
            raise ManifestError(
                f"manifest input {spec.name!r} {spec.dtype}{list(spec.shape)} does not match the model's "
                f"{found[spec.name].dtype}{list(found[spec.name].shape)}"
            )
        names = [t.name for t in info.outputs]
        if self.manifest.output_name not in names:
            raise ManifestError(
                f"manifest output {self.manifest.output_name!r} is not an output of the model "
                f"(outputs: {names})"
            )
        self._output_index = names.index(self.manifest.output_name)
