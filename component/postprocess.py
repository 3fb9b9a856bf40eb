"""Model output -> ranked predictions: softmax for logits, top-k at or above a threshold, labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .frames import Prediction


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    shifted = logits.astype(np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def top_k(scores: np.ndarray, labels: Sequence[str], k: int, threshold: float) -> tuple[Prediction, ...]:
    """The k best classes of a single row of scores that reach threshold, best first."""
    row = np.asarray(scores).reshape(-1)
    if row.size != len(labels):
        raise ValueError(f"the model produced {row.size} scores but there are {len(labels)} labels")
    k = min(k, row.size)
    best = np.argpartition(-row, k - 1)[:k]
    best = best[np.argsort(-row[best], kind="stable")]
    return tuple(
        Prediction(class_id=int(i), label=labels[i], score=float(row[i])) for i in best if row[i] >= threshold
    )
