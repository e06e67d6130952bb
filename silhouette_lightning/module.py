"""The LightningModule: backbone -> features -> (classifier -> logits, head -> embeddings) -> loss terms."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from silhouette_lightning.checkpoint_classes import adapt_to_checkpoint_classes
from silhouette_lightning.errors import ConfigError, NonFiniteLossError
from silhouette_lightning.geometry.checks import check_choice
from silhouette_lightning.losses.cross_batch_memory import CrossBatchMemory
from silhouette_lightning.metrics import EmbeddingEvaluation
from silhouette_lightning.metrics.fewshot import FewShotSettings, check_fewshot_feasible
from silhouette_lightning.models import Backbone, ProjectionHead
from silhouette_lightning.terms import CrossEntropyTerm, LossTerm, ModelOutputs

try:  # set while LightningCLI instantiates the model: hparams are then the parsed config, not objects
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
except ImportError:  # pragma: no cover - older/newer Lightning without it
    _given_hyperparameters = None

# Arguments that are objects (modules, callables); outside the CLI they are not saved as hyperparameters.
_OBJECT_ARGUMENTS = ["backbone", "losses", "optimizer", "lr_scheduler"]


class EmbeddingModule(LightningModule):
    """Representation learner: a backbone, a projection head, a linear classifier and weighted loss terms.

    Args:
        backbone: feature extractor (``SmallCNN``, ``TorchvisionBackbone``, or any
            :class:`~silhouette_lightning.models.Backbone`).
        num_classes: number of classes (linked from ``data.num_classes`` by the CLI).
        losses: the terms of the objective; default: cross-entropy alone.
        embedding_dim: width of the projection head's output (the learned embedding).
        head_hidden_dim: hidden width of the head (default: the backbone's feature width).
        head_layers: linear layers in the head (1 = a linear projection).
        optimizer: a callable ``params -> Optimizer`` (``class_path``/``init_args`` in configs).
        lr_scheduler: optional callable ``optimizer -> LRScheduler``, stepped every epoch.
        online_linear_eval: train the classifier on *detached* backbone features with its own
            cross-entropy (logged as ``<stage>/loss/linear_eval``, added to the backward pass but not to
            ``<stage>/loss``). A pure metric-learning run (SupCon, Silhouette) then still reports
            ``acc`` without the classifier shaping the representation. No loss term may read the logits.
        eval_output: the representation whose geometry validation and test measure (``silhouette``,
            ``precision_at_1``, ``recall_at_<k>``, ``map_at_r``, ``r_precision``, ``nmi``, ``ami``):
            the projection head's ``embeddings`` (default) or the backbone's ``features`` (for runs in which
            no term trains the head, such as cross-entropy alone). A list, ``[embeddings, features]``,
            measures each and logs ``<stage>/embeddings/<metric>`` and ``<stage>/features/<metric>``; a single
            name logs ``<stage>/<metric>``. The plots callback draws the first listed one.
        fewshot: N-way K-shot accuracy (nearest class mean in seeded episodes), logged at test as
            ``test/fewshot_<N>way_<K>shot`` (also at validation with ``val: true``). Keys: ``ways`` (N, an
            int or list; default [5]), ``shots`` (K; default [1]), ``queries`` (per class and episode;
            default 15; null: all remaining samples), ``episodes`` (default 500), ``seed`` (default 0),
            ``val`` (default false). ``{}`` uses the defaults; null (default) turns it off. Checked against
            the test split's class sizes before training.
        on_nonfinite: when a training loss term is NaN or infinite: ``"stop"`` the run with an error that
            names the term and the step, or ``"skip"`` the step with a warning: no parameter changes (the
            step still counts in ``global_step``), on every process together under DDP. The same holds for
            a non-finite gradient with finite losses (checked before every optimizer step, except under
            ``16-mixed``, whose gradient scaler skips such steps itself).
        max_consecutive_skips: with ``on_nonfinite: skip``, stop the run with an error once this many
            training steps in a row were skipped (a diverged run would otherwise skip to its end).
        report_accuracy: log ``<stage>/acc``, the classifier's top-1. ``false`` where the classifier is never
            trained: the introspection baseline (``configs/method/introspection.yaml``) evaluates a frozen
            pretrained backbone with ``test``/``validate`` and no checkpoint, and the accuracy of its randomly
            initialised classifier would be a chance-level number in the results table. (A config flag, not
            a guess from the model's state: Lightning restores no "was trained" flag into a module, and a
            metric that appears or vanishes by inference would break ``checkpoint.monitor`` and CSV columns.)
            With ``fit``, monitor another metric than the default ``val/acc``.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        losses: list[LossTerm] | None = None,
        embedding_dim: int = 128,
        head_hidden_dim: int | None = None,
        head_layers: int = 2,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = None,
        online_linear_eval: bool = False,
        eval_output: str | list[str] = "embeddings",
        on_nonfinite: Literal["stop", "skip"] = "stop",
        report_accuracy: bool = True,
        max_consecutive_skips: int = 10,
        fewshot: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        given = _given_hyperparameters.get() if _given_hyperparameters is not None else None
        self.save_hyperparameters(ignore=[] if given is not None else _OBJECT_ARGUMENTS)
        if num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {num_classes}.")
        losses = [CrossEntropyTerm()] if losses is None else list(losses)
        if not losses:
            raise ConfigError("model.losses is empty: give at least one loss term.")
        if online_linear_eval and any(term.input == "logits" for term in losses):
            raise ConfigError(
                "model.online_linear_eval trains the classifier on detached features, so a loss term on the "
                "logits would not shape the representation: remove the logits term (e.g. CrossEntropyTerm) "
                "or set online_linear_eval: false."
            )
        names = [term.name for term in losses]
        if len(set(names)) != len(names):
            raise ConfigError(f"Loss term names must be unique (they are logged by name), got {names}.")

        self.num_classes = num_classes
        self.online_linear_eval = online_linear_eval
        self.backbone = backbone
        self.head = ProjectionHead(backbone.num_features, embedding_dim, head_hidden_dim, head_layers)
        self.classifier = nn.Linear(backbone.num_features, num_classes)
        widths = {"features": backbone.num_features, "embeddings": embedding_dim, "logits": num_classes}
        for term in losses:
            term.bind(num_classes=num_classes, input_dim=widths[term.input])
        self.losses = nn.ModuleList(losses)
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.eval_outputs = _eval_outputs(eval_output)
        # A single name keeps the historical metric names (val/silhouette): configs' checkpoint monitors.
        self._output_prefixes = isinstance(eval_output, (list, tuple))
        self.eval_output = self.eval_outputs[0]
        self.fewshot = None if fewshot is None else FewShotSettings.from_config(fewshot, "model.fewshot")
        check_choice("on_nonfinite", on_nonfinite, ("stop", "skip"))
        self.on_nonfinite = on_nonfinite
        skips = max_consecutive_skips
        if isinstance(skips, bool) or not isinstance(skips, int) or skips < 1:
            raise ConfigError(f"model.max_consecutive_skips must be an integer >= 1, got {skips!r}.")
        self.max_consecutive_skips = max_consecutive_skips
        self._consecutive_skips = 0  # skipped training steps in a row; equal on every process under DDP
        self.report_accuracy = report_accuracy
        self._freeze_untrained_parts(losses)
        self._skip_update = False  # set by a skipped (non-finite) training step, cleared after its backward
        self._test_on_unseen_classes = False  # set by on_test_start from the data module
        at_val = self.fewshot is not None and self.fewshot.val
        fewshot_at = {"test": self.fewshot, "val": self.fewshot if at_val else None}
        self.embedding_evaluations = nn.ModuleDict(
            {
                f"{stage}_{output}": EmbeddingEvaluation(fewshot=fewshot_at[stage])
                for stage in ("val", "test")
                for output in self.eval_outputs
            }
        )

    def _freeze_untrained_parts(self, losses: list[LossTerm]) -> None:
        """Freeze the head when no term reads the embeddings, the classifier when nothing trains it.

        Why: such parameters would never receive a gradient, and DDP (without the costly
        ``find_unused_parameters``) fails on the first step when a parameter gets none. Frozen, DDP skips
        them, and the optimizer carries no state for them.
        """
        inputs = {term.input for term in losses}
        if "embeddings" not in inputs:
            self.head.requires_grad_(False)
            if "embeddings" in self.eval_outputs:
                rank_zero_warn(
                    "No loss term reads the embeddings, so the projection head stays at its random "
                    "initialisation and the embedding metrics measure a random projection of the features. "
                    "Set model.eval_output: features (as configs/method/ce.yaml does)."
                )
        if "logits" not in inputs and not self.online_linear_eval:
            self.classifier.requires_grad_(False)
            if self.report_accuracy:
                rank_zero_warn(
                    "No loss term reads the logits and model.online_linear_eval is off: the classifier stays "
                    "untrained and the logged accuracy is chance level. Set model.online_linear_eval: true."
                )

    # ------------------------------------------------------------------ forward
    def encode(self, images: Tensor) -> ModelOutputs:
        """Run images ``[B, 3, H, W]`` or multi-view images ``[B, V, 3, H, W]`` through the model.

        All views go through the backbone in one pass (BatchNorm sees the whole batch).
        """
        if images.ndim == 4:
            images = images.unsqueeze(1)
        if images.ndim != 5:
            raise ValueError(f"Expected images [B, 3, H, W] or [B, V, 3, H, W], got {tuple(images.shape)}.")
        batch, views = images.shape[:2]
        features = self.backbone(images.flatten(0, 1))
        embeddings = self.head(features)
        logits = self.classifier(features.detach() if self.online_linear_eval else features)
        return ModelOutputs(
            features=features.unflatten(0, (batch, views)),
            embeddings=embeddings.unflatten(0, (batch, views)),
            logits=logits.unflatten(0, (batch, views)),
        )

    def forward(self, images: Tensor) -> Tensor:
        """The embedding ``[B, embedding_dim]`` of images ``[B, 3, H, W]``."""
        return self.head(self.backbone(images))

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "train", self.train_acc)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "val", self.val_acc)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "test", self.test_acc)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """``"embeddings"``: the representation that validation and test measure (``eval_output``)."""
        images, labels = batch
        outputs = self.encode(images)
        output = self.eval_output[0] if isinstance(self.eval_output, list | tuple) else self.eval_output
        return {"embeddings": outputs.get(output)[:, 0], "labels": labels}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A checkpoint of other classes than the configured data: predict adapts, other stages refuse.
        adapt_to_checkpoint_classes(self, checkpoint)

    def on_train_start(self) -> None:
        # Before the first step, once the training set is known (not in __init__: the data comes later).
        try:
            size = len(self.trainer.train_dataloader.dataset)
        except (AttributeError, TypeError):  # an iterable data set, or several loaders: nothing to compare
            return
        for index, term in enumerate(self.losses):
            memories = [m for m in term.modules() if isinstance(m, CrossBatchMemory)]
            if any(memory.size > size for memory in memories):
                raise ConfigError(
                    f"model.losses[{index}] ({term.name!r}): memory_size={memories[0].size} is larger than "
                    f"the training set ({size} samples), so the memory would hold samples twice, the "
                    f"anchors' own earlier copies among them. Set memory_size <= {size} (0 turns it off)."
                )

    def on_test_start(self) -> None:
        # Unseen classes (data.unseen_classes): the classifier and the class-bound terms have no outputs
        # for them, so test measures the embedding alone.
        datamodule = getattr(self.trainer, "datamodule", None)
        self._test_on_unseen_classes = bool(getattr(datamodule, "test_on_unseen_classes", False))

    def _shared_step(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str, accuracy) -> Tensor:
        images, labels = batch
        if stage == "test" and self._test_on_unseen_classes:
            self._update_embedding_metrics("test", self.encode(images), labels)
            return torch.zeros((), device=images.device)
        if batch_idx == 0:
            # Once per loop: an out-of-range label would otherwise surface as an index error deep inside
            # cross-entropy (or a device-side assert on CUDA).
            self._check_labels(labels)
        outputs = self.encode(images)
        values = {term.name: term(outputs, labels) for term in self.losses}
        objective = sum(term.weight * values[term.name] for term in self.losses)
        linear_eval = None
        if self.online_linear_eval:
            # Only the classifier learns from this (its input is detached): it measures, not shapes.
            linear_eval = nn.functional.cross_entropy(
                outputs.logits.flatten(0, 1), labels.repeat_interleave(outputs.num_views)
            )
        if stage == "train" and not self._finite_everywhere(
            {**values, **({"linear_eval": linear_eval} if linear_eval is not None else {})}
        ):
            # on_nonfinite="skip", on every process alike. Not `return None`: Lightning refuses that under
            # DDP. A zero loss on every trainable parameter keeps backward (and DDP's all-reduce) going;
            # on_after_backward then drops the gradients, so the optimizer changes nothing.
            self._skip_update = True
            return sum((p.sum() for p in self.parameters() if p.requires_grad), torch.zeros(())) * 0.0
        # Epoch means averaged over all processes: every rank must see the same val/loss, or they disagree
        # on the best checkpoint (whose file name holds it) and test_after_fit fails on the others.
        epoch_mean = dict(on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True)
        for name, value in values.items():
            self.log(f"{stage}/loss/{name}", value, **epoch_mean)
        self.log(f"{stage}/loss", objective, prog_bar=True, **epoch_mean)
        total = objective
        if linear_eval is not None:
            self.log(f"{stage}/loss/linear_eval", linear_eval, **epoch_mean)
            total = total + linear_eval
        # Accuracy (and the embedding metrics) of the first view only, so that they mean the same with and
        # without multi-view data.
        if stage != "train":
            self._update_embedding_metrics(stage, outputs, labels)
        if self.report_accuracy:
            accuracy(outputs.logits[:, 0].detach(), labels)
            self.log(
                f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(labels)
            )
        return total

    def on_after_backward(self) -> None:
        if self._skip_update:
            # No gradient, no update: optimizers skip parameters whose grad is None (no weight decay, no
            # momentum step either). The step still counts in global_step. The flag stays set until
            # on_before_optimizer_step, which then neither checks nor counts this step again.
            self._drop_gradients()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._skip_update:  # a non-finite loss: already counted, gradients already dropped
            self._skip_update = False
            return
        if not self._gradients_finite_everywhere():
            self._drop_gradients()
            return
        self._consecutive_skips = 0

    def _drop_gradients(self) -> None:
        for parameter in self.parameters():
            parameter.grad = None

    def _gradients_finite_everywhere(self) -> bool:
        """True if every gradient is finite (on every process); else stop (raise) or skip, by config.

        Why, with the losses checked already: a loss can be finite while its gradient is not (an operation
        whose derivative is infinite where its value is not, a masked NaN), and one NaN gradient turns the
        parameters NaN for good. Gradients are all-reduced under DDP before this runs, so the processes
        agree; the decision is reduced anyway, at the cost of one flag. Under ``16-mixed`` an infinite
        gradient is routine (the gradient scaler skips the step and lowers its scale), so no check there.
        """
        if str(self.trainer.precision).startswith("16") and "mixed" in str(self.trainer.precision):
            return True
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        if not grads:
            return True
        # One norm per tensor (fused), then one host synchronisation: a norm is finite iff every entry is
        # (up to an overflow of the sum of squares above ~1e38, itself a diverged run).
        norms = torch.stack([n.float() for n in torch._foreach_norm(grads)])
        finite = self.trainer.strategy.reduce_boolean_decision(bool(norms.isfinite().all()), all=True)
        if finite:
            return True
        self._nonfinite(
            f"Non-finite gradient at step {self.global_step} (epoch {self.current_epoch}) with finite losses."
        )
        return False

    def _nonfinite(self, message: str) -> None:
        """Stop the run (``on_nonfinite: stop``, or too many skips in a row), or warn: the step is skipped."""
        if self.on_nonfinite == "skip":
            self._consecutive_skips += 1
            if self._consecutive_skips < self.max_consecutive_skips:
                rank_zero_warn(f"{message} The step is skipped (model.on_nonfinite: skip).")
                return
            raise NonFiniteLossError(
                f"{message} That is {self._consecutive_skips} skipped steps in a row "
                f"(model.max_consecutive_skips: {self.max_consecutive_skips}): the run has diverged and "
                "would skip to its end. Lower the learning rate, check the data, or resume from an earlier "
                "checkpoint in the run folder's checkpoints/."
            )
        raise NonFiniteLossError(
            f"{message} Training stops rather than train on NaN. Lower the learning rate, check the data "
            "(corrupt images, label range), try precision 32, or set model.on_nonfinite: skip to skip such "
            "steps. The last checkpoint is in the run folder's checkpoints/."
        )

    def _finite_everywhere(self, values: dict[str, Tensor]) -> bool:
        """True if every loss value is finite on every process; else stop (raise) or skip, by config.

        One host synchronisation per step (and one all-reduce of a flag under DDP, so that all processes
        stop or skip together instead of hanging).
        """
        flags = torch.stack([value.detach().float() for value in values.values()]).isfinite().tolist()
        finite = all(flags)
        if self._trainer is not None:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return True
        checked = zip(values.items(), flags, strict=True)
        bad = [f"'{name}' = {value.item()}" for (name, value), ok in checked if not ok]
        where = ", ".join(bad) if bad else "on another process"
        self._nonfinite(f"Non-finite loss at step {self.global_step} (epoch {self.current_epoch}): {where}.")
        return False

    def on_validation_epoch_end(self) -> None:
        self._log_embedding_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_embedding_metrics("test")

    def logged_metric_names(self, stage: str) -> list[str]:
        """The metric names this module logs in ``stage`` (``"train"``, ``"val"``, ``"test"``), e.g. to
        check a ``checkpoint.monitor`` before training: ``<stage>/loss``, ``<stage>/loss/<term name>``,
        ``<stage>/loss/linear_eval`` (``online_linear_eval``), ``<stage>/acc`` (``report_accuracy``) and,
        outside training, the embedding metrics. (A test on unseen classes logs the embedding metrics only.)
        """
        check_choice("stage", stage, ("train", "val", "test"))
        names = ["loss", *(f"loss/{term.name}" for term in self.losses)]
        if self.online_linear_eval:
            names.append("loss/linear_eval")
        if self.report_accuracy:
            names.append("acc")
        if stage != "train":
            for output in self.eval_outputs:
                prefix = f"{output}/" if self._output_prefixes else ""
                names += [prefix + name for name in self.embedding_evaluations[f"{stage}_{output}"].names()]
        return [f"{stage}/{name}" for name in names]

    @property
    def val_embedding_metrics(self) -> EmbeddingEvaluation:
        """Validation metrics of the first ``eval_output`` (what the plots callback draws)."""
        return self.embedding_evaluations[f"val_{self.eval_output}"]

    @property
    def test_embedding_metrics(self) -> EmbeddingEvaluation:
        """Test metrics of the first ``eval_output``."""
        return self.embedding_evaluations[f"test_{self.eval_output}"]

    def _update_embedding_metrics(self, stage: str, outputs: ModelOutputs, labels: Tensor) -> None:
        # First view only, so that the metrics mean the same with and without multi-view data.
        for output in self.eval_outputs:
            self.embedding_evaluations[f"{stage}_{output}"].update(outputs.get(output)[:, 0], labels)

    def _log_embedding_metrics(self, stage: str) -> None:
        for output in self.eval_outputs:
            metrics = self.embedding_evaluations[f"{stage}_{output}"]
            prefix = f"{stage}/{output}/" if self._output_prefixes else f"{stage}/"
            # Each metric gathers all ranks' embeddings itself, so the values are global already.
            for name, value in metrics.compute().items():
                bar = name == "silhouette" and output == self.eval_output
                self.log(f"{prefix}{name}", value.float(), on_epoch=True, prog_bar=bar)
            metrics.reset()

    def setup(self, stage: str) -> None:
        # Before any training step: a few-shot setting the test (or val) classes cannot serve.
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.fewshot is None or not hasattr(datamodule, "split_dataset"):
            return
        splits = [("test", datamodule.test_class_names)] if stage in ("fit", "test") else []
        if self.fewshot.val and stage in ("fit", "validate"):
            splits.append(("val", datamodule.class_names))
        for split, names in splits:
            counts = Counter(datamodule.split_dataset(split).targets)
            unseen = split == "test" and datamodule.test_on_unseen_classes
            where = "the unseen test classes" if unseen else f"the {split} split"
            check_fewshot_feasible(self.fewshot, {names[k]: int(n) for k, n in counts.items()}, where)

    def _check_labels(self, labels: Tensor) -> None:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            raise ConfigError(
                f"Labels must lie in [0, {self.num_classes}) but this batch has labels in [{low}, {high}]. "
                "Check that model.num_classes matches the data (the CLI links it from data.num_classes) and "
                "that the dataset's labels are class indices."
            )

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        trainable = [p for p in self.parameters() if p.requires_grad]
        if not trainable:
            # E.g. `fit` with configs/method/introspection.yaml (frozen backbone, no term on head or
            # classifier); torch would fail with "optimizer got an empty parameter list".
            raise ConfigError(
                "Nothing to train: the backbone is frozen (model.backbone.init_args.freeze) and no loss term "
                "trains the projection head or the classifier. The introspection baseline is evaluated with "
                "`silhouette-fit test` or `validate`, not `fit`; for linear probing set "
                "model.online_linear_eval: true or add a term on the logits or embeddings."
            )
        try:
            optimizer = self.optimizer(trainable)
        except ValueError as err:
            if "learning rate" not in str(err):
                raise
            # torch refuses a negative lr itself, as a bare ValueError from deep inside the optimizer.
            raise ConfigError(f"model.optimizer.init_args.lr must be a finite number > 0 ({err}).") from err
        _check_learning_rates(optimizer)
        if self.lr_scheduler is None:
            return optimizer
        scheduler = self.lr_scheduler(optimizer)
        if self._trainer is not None:
            _warn_if_cosine_outlasts_the_run(scheduler, self.trainer.max_epochs)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            config["monitor"] = "val/loss"
        return {"optimizer": optimizer, "lr_scheduler": config}


def _check_learning_rates(optimizer: torch.optim.Optimizer) -> None:
    """A learning rate <= 0 or NaN trains nothing (or NaN) without any error from torch: refuse it."""
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        if not (math.isfinite(lr) and lr > 0):
            raise ConfigError(
                f"model.optimizer.init_args.lr must be a finite number > 0, got {lr}. Set it to a positive "
                "learning rate (e.g. 1e-3 for AdamW)."
            )


def _warn_if_cosine_outlasts_the_run(scheduler: Any, max_epochs: int | None) -> None:
    """Warn when a per-epoch cosine schedule's ``T_max`` is not the run's length.

    Why: lowering ``--trainer.max_epochs`` for a quick run leaves ``T_max`` at the config's value, so the
    learning rate never decays (T_max > epochs), or a longer run climbs back up after ``T_max`` epochs.
    """
    if not isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        return
    if max_epochs is None or max_epochs < 0 or scheduler.T_max == max_epochs:
        return
    rank_zero_warn(
        f"model.lr_scheduler.init_args.T_max is {scheduler.T_max} but trainer.max_epochs is {max_epochs}: "
        "the cosine schedule is stepped once per epoch and will not end at the run's end. Set "
        f"--model.lr_scheduler.init_args.T_max {max_epochs} (or the same value for both)."
    )


def _eval_outputs(eval_output: str | list[str]) -> tuple[str, ...]:
    """``model.eval_output`` as a tuple of distinct, valid representation names."""
    names = [eval_output] if isinstance(eval_output, str) else list(eval_output)
    valid = ("embeddings", "features")
    bad = [name for name in names if name not in valid]
    if not names or bad or len(set(names)) != len(names):
        raise ConfigError(
            f"model.eval_output={eval_output!r} is not supported; give one of {list(valid)} or a list of "
            "distinct ones, e.g. [embeddings, features]."
        )
    return tuple(names)
