from __future__ import annotations

import numpy as np
import pytest

from component.postprocess import softmax, top_k

LABELS = [f"class{i}" for i in range(6)]


def test_softmax_is_stable_for_large_logits_and_sums_to_one() -> None:
    p = softmax(np.array([[1000.0, 1001.0, 1002.0]], dtype=np.float32))
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(), 1.0)
    np.testing.assert_allclose(p[0], [0.09003057, 0.24472847, 0.66524096], rtol=1e-6)


def test_top_k_is_best_first_and_respects_k_and_threshold() -> None:
    scores = np.array([[0.05, 0.4, 0.01, 0.3, 0.2, 0.04]])
    got = top_k(scores, LABELS, k=5, threshold=0.1)
    assert [(p.class_id, p.label) for p in got] == [(1, "class1"), (3, "class3"), (4, "class4")]
    assert [p.score for p in top_k(scores, LABELS, k=2, threshold=0.0)] == [0.4, 0.3]


def test_nothing_above_the_threshold_gives_an_empty_result() -> None:
    assert top_k(np.full(6, 1 / 6), LABELS, k=5, threshold=0.3) == ()


def test_k_larger_than_classes_returns_all_classes() -> None:
    assert len(top_k(np.linspace(0, 1, 6), LABELS, k=50, threshold=0.0)) == 6


def test_label_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="7 scores but there are 6 labels"):
        top_k(np.zeros(7), LABELS, k=1, threshold=0)
