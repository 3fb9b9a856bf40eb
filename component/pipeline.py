"""Frames through the stages: preprocess -> predict on the agent -> scores -> top-k, timed per stage.

`prepare` turns one frame into its input tensor (FrameError for a frame that cannot be used, so the caller
skips just that one); `infer` sends the prepared frames of a batch to the model together and ranks each
frame's row of scores. A frame's `predict` latency is the whole call that carried it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .classify import RemoteModel, SentScores
from .frames import Classification, Frame, StageLatency
from .postprocess import softmax, top_k
from .preprocess import Preprocessor


@dataclass(frozen=True)
class PreparedFrame:
    """A frame with its model input tensor (batch of 1) and the milliseconds preprocessing took."""

    frame: Frame
    tensor: np.ndarray = field(repr=False, compare=False)
    preprocess_ms: float


@dataclass(frozen=True)
class SentBatch:
    """A batch whose Predict is already on the agent (FramePipeline.send), with when it was sent."""

    pipeline: FramePipeline
    batch: tuple[PreparedFrame, ...]
    started: float
    scores: SentScores = field(repr=False, compare=False)

    def cancel(self) -> None:
        self.scores.cancel()


def _stacked(batch: Sequence[PreparedFrame]) -> np.ndarray:
    tensors = [p.tensor for p in batch]
    return tensors[0] if len(tensors) == 1 else np.concatenate(tensors)


class FramePipeline:
    def __init__(
        self,
        preprocessor: Preprocessor,
        model: RemoteModel,
        labels: Sequence[str],
        k: int,
        threshold: float,
    ) -> None:
        self.preprocessor = preprocessor
        self.model = model
        self.labels = labels
        self.k = k
        self.threshold = threshold
        self._logits = model.manifest.output_kind == "logits"
        # Called with (inputs, outputs, frame timestamp) for each frame after its Predict, e.g. to sample
        # data capture; inputs and outputs are that frame's own (batch of 1).
        self.on_inference: Callable[[dict[str, np.ndarray], dict[str, np.ndarray], float], None] | None = None

    def prepare(self, frame: Frame) -> PreparedFrame:
        """Raises FrameError for an image the preprocessor cannot use."""
        started = time.perf_counter()
        tensor = self.preprocessor(frame.image)
        return PreparedFrame(frame, tensor, (time.perf_counter() - started) * 1000)

    def send(self, batch: Sequence[PreparedFrame]) -> SentBatch | None:
        """Sends the batch's Predict now and returns at once (None when it takes more than one call); the
        results come from `infer(batch, sent)`."""
        started = time.perf_counter()
        scores = self.model.send(_stacked(batch))
        return None if scores is None else SentBatch(self, tuple(batch), started, scores)

    def infer(self, batch: Sequence[PreparedFrame], sent: SentBatch | None = None) -> list[Classification]:
        """One result per prepared frame, in order. Raises AgentError when the agent fails. With `sent`
        (this pipeline's `send` of this batch), its answer is taken instead of a new call."""
        if sent is not None:
            if sent.pipeline is not self or len(sent.batch) != len(batch):
                raise ValueError("infer() was given a Predict sent for another batch or pipeline")
            started = sent.started
            output = sent.scores.result()
            answered = sent.scores.answered_at or time.perf_counter()  # not when the loop came to take it
        else:
            started = time.perf_counter()
            output = self.model.predict(_stacked(batch))
            answered = time.perf_counter()
        predict_ms = (answered - started) * 1000
        manifest = self.model.manifest
        results = []
        for row, prepared in enumerate(batch):
            t0 = time.perf_counter()
            scores = output[row : row + 1]
            if self.on_inference is not None:
                self.on_inference(
                    {manifest.input.name: prepared.tensor},
                    {manifest.output_name: scores},
                    prepared.frame.timestamp,
                )
            predictions = top_k(
                softmax(scores) if self._logits else scores, self.labels, self.k, self.threshold
            )
            latency = StageLatency(
                read=prepared.frame.read_ms,
                preprocess=prepared.preprocess_ms,
                predict=predict_ms,
                postprocess=(time.perf_counter() - t0) * 1000,
            )
            frame = prepared.frame
            results.append(
                Classification(frame.frame_id, frame.timestamp, frame.source, predictions, latency)
            )
        return results

    def classify(self, frame: Frame) -> Classification:
        """One frame on its own: prepare + infer."""
        return self.infer([self.prepare(frame)])[0]
