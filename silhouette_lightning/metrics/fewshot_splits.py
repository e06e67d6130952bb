"""Before any training step: few-shot settings that the evaluated splits' classes cannot serve."""

from __future__ import annotations

from collections import Counter
from typing import Any

from silhouette_lightning.metrics.fewshot import FewShotSettings, check_fewshot_feasible


def check_fewshot_splits(settings: FewShotSettings | None, datamodule: Any, stage: str) -> None:
    """Check ``settings`` against the class sizes of the splits Lightning's ``stage`` (``fit``,
    ``validate``, ``test``, ...) will measure: the test split (the unseen classes with
    ``data.unseen_classes``) for ``fit`` and ``test``, the validation split with ``settings.val`` for
    ``fit`` and ``validate``. Nothing to check without settings or without a data module that can give its
    splits (``split_dataset``)."""
    if settings is None or not hasattr(datamodule, "split_dataset"):
        return
    splits = [("test", datamodule.test_class_names)] if stage in ("fit", "test") else []
    if settings.val and stage in ("fit", "validate"):
        splits.append(("val", datamodule.class_names))
    for split, names in splits:
        counts = Counter(datamodule.split_dataset(split).targets)
        unseen = split == "test" and datamodule.test_on_unseen_classes
        where = "the unseen test classes" if unseen else f"the {split} split"
        check_fewshot_feasible(settings, {names[k]: int(n) for k, n in counts.items()}, where)
