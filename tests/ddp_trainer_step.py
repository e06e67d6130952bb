"""One optimizer step of :class:`EmbeddingModule` through a Lightning ``Trainer``, for the DDP parity test.

Run as a script (not by pytest: Lightning's ``ddp`` launcher re-executes ``sys.argv`` for rank 1)::

    python tests/ddp_trainer_step.py OUT_DIR --devices 2   # DDP, 2 CPU processes (gloo)
    python tests/ddp_trainer_step.py OUT_DIR --devices 1   # one process, the concatenated batch

For every case in ``CASES`` it trains one SGD step (lr 1, float64) and rank 0 saves the parameter change
(= minus the gradient that was applied) to ``OUT_DIR/<case>.pt``. Under DDP each rank gets its own half of
the batch, with different class mixes and a singleton class, as the raw-tensor parity test does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, Dataset

from silhouette_lightning.models import Backbone
from silhouette_lightning.module import EmbeddingModule
from silhouette_lightning.terms import CrossEntropyTerm, SoftSilhouetteTerm, SupConTerm

# Rank 0 gets the first 8 samples, rank 1 the last 8; class 4 is a singleton on rank 1 only, class 3 lives
# on rank 0 only.
LABELS = [0, 0, 1, 3, 3, 2, 1, 0] + [1, 2, 2, 4, 0, 1, 2, 0]
NUM_CLASSES = 5
VIEWS = 2


def _terms(case: str) -> tuple[list, bool]:
    """The loss terms of a case, and whether it trains the classifier online (no logits term)."""
    silhouette = SoftSilhouetteTerm(weight=0.7)
    if case == "ce_silhouette":
        return [CrossEntropyTerm(), silhouette], False
    if case == "ce_silhouette_centroid":
        return [CrossEntropyTerm(), SoftSilhouetteTerm(variant="centroid", distance="cosine")], False
    if case == "supcon":
        return [SupConTerm(temperature=0.2)], True
    if case == "hybrid":
        return [CrossEntropyTerm(), SupConTerm(weight=0.5), silhouette], False
    if case == "ce_only":  # the head receives no gradient: must not break DDP
        return [CrossEntropyTerm()], False
    if case == "silhouette_only":  # no online classifier: the classifier receives no gradient
        return [SoftSilhouetteTerm()], False
    if case == "nonfinite_skip":  # a NaN image on rank 1 only: both ranks must skip the step together
        return [CrossEntropyTerm(), SupConTerm(weight=0.5), silhouette], False
    raise ValueError(case)


CASES = [
    "ce_silhouette",
    "ce_silhouette_centroid",
    "supcon",
    "hybrid",
    "ce_only",
    "silhouette_only",
    "nonfinite_skip",
]
NAN_SAMPLE = 11  # in rank 1's half


class TinyBackbone(Backbone):
    """No BatchNorm: per-rank batch statistics would differ from the global batch's by design."""

    def __init__(self) -> None:
        super().__init__()
        self.num_features = 12
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 12), nn.Tanh())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


class OneBatch(Dataset):
    """The whole (per-rank) batch as a single item, so the DataLoader does not split or shuffle it."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images, self.labels


class PerRankData(LightningDataModule):
    """Rank 0 gets the first 8 samples, rank 1 the rest; one process gets all 16 (as one batch).

    The rank is read when the loader is built: only then has the launcher set it up.
    """

    def __init__(self, nan_sample: int | None = None) -> None:
        super().__init__()
        self.nan_sample = nan_sample

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(1)
        images = torch.randn(len(LABELS), VIEWS, 3, 4, 4, dtype=torch.float64, generator=generator)
        if self.nan_sample is not None:
            images[self.nan_sample] = float("nan")
        labels = torch.tensor(LABELS)
        if self.trainer.world_size == 2:
            part = slice(0, 8) if self.trainer.global_rank == 0 else slice(8, None)
            images, labels = images[part], labels[part]
        # batch_size=None: the item is the batch.
        return DataLoader(OneBatch(images, labels), batch_size=None)


def _model(case: str) -> EmbeddingModule:
    torch.manual_seed(0)
    terms, online = _terms(case)
    return EmbeddingModule(
        backbone=TinyBackbone(),
        num_classes=NUM_CLASSES,
        losses=terms,
        embedding_dim=6,
        # One linear layer: a hidden layer has BatchNorm, whose per-process batch statistics differ from
        # the global batch's (SyncBatchNorm, which would fix that, needs a GPU).
        head_layers=1,
        optimizer=lambda params: torch.optim.SGD(params, lr=1.0),
        online_linear_eval=online,
        eval_output="features" if case == "ce_only" else "embeddings",
        on_nonfinite="skip" if case == "nonfinite_skip" else "stop",
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--devices", type=int, choices=(1, 2), required=True)
    args = parser.parse_args()
    for case in CASES:
        model = _model(case)
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        trainer = Trainer(
            accelerator="cpu",
            devices=args.devices,
            strategy="ddp" if args.devices == 2 else "auto",
            precision="64-true",
            max_steps=1,
            max_epochs=1,  # one batch per epoch; a skipped step would not count towards max_steps
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            use_distributed_sampler=False,
        )
        trainer.fit(model, datamodule=PerRankData(NAN_SAMPLE if case == "nonfinite_skip" else None))
        if trainer.global_rank == 0:
            after = dict(model.named_parameters())
            step = {name: (after[name].detach() - before[name].to(torch.float64)) for name in before}
            args.out.mkdir(parents=True, exist_ok=True)
            torch.save({"step": step, "world_size": trainer.world_size}, args.out / f"{case}.pt")


if __name__ == "__main__":
    main()
