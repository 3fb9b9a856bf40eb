"""What crosses the pipeline's stages: one shape each, frozen."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from PIL import Image

from .preprocess import open_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """A decoded frame. frame_id counts up from 1 per source; timestamp is wall-clock seconds at capture."""

    frame_id: int
    timestamp: float
    source: str
    image: Image.Image = field(repr=False, compare=False)
    read_ms: float = 0.0
    # the bytes `image` was opened from, pixels not decoded (a file source's frame); None for a frame
    # that came decoded (a camera's)
    encoded: bytes | None = field(default=None, repr=False, compare=False)

    def undecoded(self) -> Frame:
        """This frame with its image opened anew from `encoded`, pixels not decoded: what a frame kept for
        later (read ahead and already prepared) holds instead of the pixels its preprocessing decoded
        (measured: 2.4 MB less resident with three frames ahead). Itself when it has no bytes, or should
        they not open again (they did once, when the frame was read)."""
        if self.encoded is None:
            return self
        try:
            return replace(self, image=open_bytes(self.encoded))
        except Exception:  # Pillow's own errors for bad data; the frame as it is still prepares as it did
            logger.debug("frame %d could not be opened again from its bytes", self.frame_id, exc_info=True)
            return self


@dataclass(frozen=True)
class Prediction:
    class_id: int
    label: str
    score: float


@dataclass(frozen=True)
class StageLatency:
    """Milliseconds spent in each stage for one frame."""

    read: float
    preprocess: float
    predict: float
    postprocess: float

    @property
    def total(self) -> float:
        return self.read + self.preprocess + self.predict + self.postprocess


@dataclass(frozen=True)
class Classification:
    """The outcome of one frame: top-k predictions at or above the threshold, best first."""

    frame_id: int
    timestamp: float
    source: str
    predictions: tuple[Prediction, ...]
    latency: StageLatency
