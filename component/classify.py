"""The component's model on the agent: load it, predict, and reload it after an agent restart.

The model folder's manifest says which input to feed and which output to read; the agent's own
description of the loaded model is checked against it once per load, so a manifest that does not match
its model fails loudly at start instead of producing wrong classes.

Batches: the manifest's input shape is one frame's tensor (batch 1). How many frames one Predict may carry
is read from the loaded model's first input dimension: dynamic (-1) takes any number, a fixed N takes
exactly N; and no call carries more than `max_request_bytes` of tensor (the agent refuses messages past its
limit, 32 MiB by default), so every BatchSize is classified. `predict` splits a batch into calls the model
accepts and pads a short last call with copies of its last frame (their scores are dropped), so a model
with a fixed batch of 1 simply gets one call per frame.

Checked once per load: the manifest's input against the model's, and the output width against the number
of labels (a model whose output does not fit its labels would classify into wrong names). Checked on every
call: the scores are finite (an overflowing model gives NaN or inf, which must never look like "nothing
detected").

Names: the agent serves models by name. `ensure_loaded` accepts the name when the agent serves it from the
same folder; when another folder holds it (an older version of the model component, say), a name the
component owns (`owned`: one it chose, not one a user set) is reclaimed: unloaded and loaded again from
the new folder.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from agent_client import AgentClient, ModelInfo
from agent_client.client import SentPredict
from agent_client.errors import ManifestError, ModelAlreadyLoadedError, ModelNotFoundError, ModelOutputError
from modelpkg.manifest import ModelManifest

logger = logging.getLogger(__name__)


MAX_REQUEST_BYTES = 16 * 1024 * 1024


class RemoteModel:
    def __init__(
        self,
        client: AgentClient,
        manifest: ModelManifest,
        name: str,
        owned: bool = True,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        self.client = client
        self.manifest = manifest
        self.name = name
        self.owned = owned
        self.max_request_bytes = max_request_bytes
        self._output_index = 0
        self.loads = 0
        self.calls = 0
        self.reclaims = 0
        self.max_batch: int | None = 1  # frames per Predict the loaded model takes; None = any number

    @property
    def url(self) -> str:
        return str(self.manifest.folder)

    def ensure_loaded(self) -> ModelInfo:
        """Loads the model folder under self.name (see the module docstring for names already taken)."""
        try:
            info = self.client.load_model(self.url, self.name)
            logger.info("agent loaded model %s from %s", self.name, self.url)
        except ModelAlreadyLoadedError:
            info = self.client.describe_model(self.name)
            if _same_folder(info.url, self.url):
                logger.info("agent already serves model %s from %s", self.name, self.url)
            elif self.owned:
                logger.warning(
                    "agent serves %s from %s, an older package of this component: loading %s instead",
                    self.name,
                    info.url,
                    self.url,
                )
                self.client.unload_model(self.name)
                info = self.client.load_model(self.url, self.name)
                self.reclaims += 1
            else:
                raise ManifestError(
                    f"the agent already serves a model named {self.name!r} from {info.url}, not {self.url}; "
                    f"set ModelName to another name (or leave it empty)"
                ) from None
        self._check(info)
        self.loads += 1
        return info

    def counts(self) -> dict[str, int]:
        return {"model_loads": self.loads, "predict_calls": self.calls, "model_reclaims": self.reclaims}

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """The model's scores for a batch of n frames ([n, ...] in, [n, ...] out), in as few Predict calls as
        the model allows. Reloads once if the agent forgot the model (restart)."""
        size = len(batch)
        step = self._step(batch)
        if step == size:
            return self._predict_once(batch)
        parts = []
        for start in range(0, size, step):
            part = batch[start : start + step]
            short = step - len(part) if self.max_batch is not None else 0
            if short:  # a fixed-batch model needs exactly `step` frames
                part = np.concatenate([part, np.repeat(part[-1:], short, axis=0)])
            parts.append(self._predict_once(part)[: step - short])
        return np.concatenate(parts)

    def send(self, batch: np.ndarray) -> SentScores | None:
        """Sends a batch that one Predict carries and returns at once (None for a batch that takes more
        calls: use predict); the result is what predict(batch) would have returned or raised."""
        if self._step(batch) != len(batch):
            return None
        return SentScores(self, batch, self.client.send_predict(self.name, {self.manifest.input.name: batch}))

    def _step(self, batch: np.ndarray) -> int:
        """Frames per Predict call for this batch: the model's fixed batch, or as many as fit one request."""
        if self.max_batch is not None:
            return self.max_batch
        return min(len(batch), max(1, self.max_request_bytes // max(1, batch[:1].nbytes)))

    def _predict_once(self, batch: np.ndarray, sent: SentPredict | None = None) -> np.ndarray:
        inputs = {self.manifest.input.name: batch}
        try:
            outputs = sent.result() if sent is not None else self.client.predict(self.name, inputs)
        except ModelNotFoundError:
            logger.warning("the agent no longer has model %s (restarted?); loading it again", self.name)
            self.ensure_loaded()
            outputs = self.client.predict(self.name, inputs)
        self.calls += 1
        scores = outputs[self._output_index]
        finite = np.isfinite(scores.reshape(len(scores), -1)).all(axis=1)
        if not finite.all():
            raise ModelOutputError(
                f"model {self.name} returned non-finite scores (NaN or inf) for {int((~finite).sum())} of "
                f"{len(scores)} frame(s); the model is failing (an overflowing quantised model?): nothing "
                f"is published for them"
            )
        return scores

    def _check(self, info: ModelInfo) -> None:
        spec = self.manifest.input
        found = {t.name: t for t in info.inputs}
        if spec.name not in found:
            raise ManifestError(
                f"manifest input {spec.name!r} is not an input of the loaded model "
                f"(inputs: {', '.join(found)}); fix {self.manifest.folder / 'manifest.json'}"
            )
        model_input = found[spec.name]
        shape, want = model_input.shape, tuple(spec.shape)
        fits = (  # the first (batch) dimension may differ: see the module docstring
            len(shape) == len(want)
            and all(got < 0 or got == need for got, need in zip(shape[1:], want[1:], strict=True))
            and str(model_input.dtype) == spec.dtype
        )
        if not fits:
            raise ManifestError(
                f"manifest input {spec.name!r} {spec.dtype}{list(spec.shape)} does not match the model's "
                f"{model_input.dtype}{list(model_input.shape)}"
            )
        names = [t.name for t in info.outputs]
        if self.manifest.output_name not in names:
            raise ManifestError(
                f"manifest output {self.manifest.output_name!r} is not an output of the model "
                f"(outputs: {names})"
            )
        self._output_index = names.index(self.manifest.output_name)
        batch, rows = shape[0], info.outputs[self._output_index].shape[:1]
        if batch != 1 and rows != (batch,):
            raise ManifestError(
                f"model {self.name} takes a batch of {'any size' if batch < 1 else batch} but its output "
                f"{self.manifest.output_name!r} {list(info.outputs[self._output_index].shape)} does not "
                f"have the same first dimension"
            )
        width = 1
        for dim in info.outputs[self._output_index].shape[1:]:
            width *= dim
        if width > 0 and width != self.manifest.num_classes:
            raise ManifestError(
                f"model {self.name} gives {width} scores per frame but its manifest and labels have "
                f"{self.manifest.num_classes} classes; use the labels made for this model"
            )
        self.max_batch = None if batch < 1 else batch
        logger.info(
            "model %s takes %s frame(s) per Predict", self.name, "any number of" if batch < 1 else batch
        )


class SentScores:
    """A batch's Predict already on the agent (RemoteModel.send)."""

    def __init__(self, model: RemoteModel, batch: np.ndarray, sent: SentPredict) -> None:
        self._model = model
        self._batch = batch
        self._sent = sent
        self._reloaded = False

    def result(self) -> np.ndarray:
        """The scores, checked and reloaded after an agent restart as by RemoteModel.predict."""
        loads = self._model.loads
        try:
            return self._model._predict_once(self._batch, self._sent)
        finally:
            self._reloaded = self._model.loads != loads

    def cancel(self) -> None:
        self._sent.cancel()

    @property
    def answered_at(self) -> float | None:
        """When the agent answered (None: not yet, or the answer came by a retry or after a reload)."""
        return None if self._reloaded else self._sent.answered_at


def _same_folder(a: str, b: str) -> bool:
    """Whether two model urls are the same folder once symbolic links are resolved."""
    return os.path.realpath(a) == os.path.realpath(b)
