"""Classification -> the MQTT payload.

Keys of the AWS sample this project replaces are kept exactly (consumers parse them):
`timestamp` (str of an aware UTC datetime), `inference-type` ("image-classification"),
`inference-description`, `inference-results` = [{"Label": str, "Score": str}] best first.
Added: `ClassId` in each result, and `model` {name, version, sha256}, `source`, `frame-id`,
`latency-ms` {read, preprocess, predict, postprocess, total}.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .frames import Classification


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    sha256: str


def to_payload(result: Classification, model: ModelIdentity, top_k: int, threshold: float) -> dict[str, Any]:
    latency = result.latency
    return {
        "timestamp": str(datetime.fromtimestamp(result.timestamp, tz=timezone.utc)),
        "inference-type": "image-classification",
        "inference-description": f"Top {top_k} predictions with score {threshold} or above ",
        "inference-results": [
            {"Label": p.label, "Score": str(p.score), "ClassId": p.class_id} for p in result.predictions
        ],
        "model": {"name": model.name, "version": model.version, "sha256": model.sha256},
        "source": result.source,
        "frame-id": result.frame_id,
        "latency-ms": {
            "read": round(latency.read, 3),
            "preprocess": round(latency.preprocess, 3),
            "predict": round(latency.predict, 3),
            "postprocess": round(latency.postprocess, 3),
            "total": round(latency.total, 3),
        },
    }
