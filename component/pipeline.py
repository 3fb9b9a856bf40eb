"""One frame through the stages: preprocess -> predict on the agent -> scores -> top-k, timed per stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from .classify import RemoteModel
from .frames import Classification, Frame, StageLatency
from .postprocess import softmax, top_k
from .preprocess import Preprocessor


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
        # Called with (inputs, outputs, frame timestamp) after each Predict, e.g. to sample data capture.
        self.on_inference: Callable[[dict[str, np.ndarray], dict[str, np.ndarray], float], None] | None = None

    def classify(self, frame: Frame) -> Classification:
        """Raises FrameError for an image the preprocessor cannot use, AgentError when the agent fails."""
        t0 = time.perf_counter()
        tensor = self.preprocessor(frame.image)
        t1 = time.perf_counter()
        output = self.model.predict(tensor)
        t2 = time.perf_counter()
        if self.on_inference is not None:
            manifest = self.model.manifest
            self.on_inference({manifest.input.name: tensor}, {manifest.output_name: output}, frame.timestamp)
        scores = softmax(output) if self._logits else output
        predictions = top_k(scores, self.labels, self.k, self.threshold)
        t3 = time.perf_counter()
        latency = StageLatency(
            read=frame.read_ms,
            preprocess=(t1 - t0) * 1000,
            predict=(t2 - t1) * 1000,
            postprocess=(t3 - t2) * 1000,
        )
        return Classification(
            frame_id=frame.frame_id,
            timestamp=frame.timestamp,
            source=frame.source,
            predictions=predictions,
            latency=latency,
        )
