"""The cross-batch memory: FIFO queue, the losses with memory against oracles on the concatenated
references, train/eval behaviour, state_dict/checkpoint round trips and bad sizes."""

import pytest
import torch
from lightning.pytorch import Trainer
from pytorch_metric_learning import losses as pml_losses

from silhouette_lightning.cli import main
from silhouette_lightning.data import ImageDataModule
from silhouette_lightning.errors import ConfigError
from silhouette_lightning.losses import CrossBatchMemory, SoftSilhouetteLoss, SupConLoss
from silhouette_lightning.models import SmallCNN
from silhouette_lightning.module import EmbeddingModule
from silhouette_lightning.terms import CrossEntropyTerm, SoftSilhouetteTerm, SupConTerm
from tests.cli_args import TINY
from tests.oracles import silhouette_oracle as oracle
from tests.oracles.centroid_oracle import centroid_terms

F64 = torch.float64


def _batches(sizes, dim=3, classes=4, seed=0):
    """Batches ``(x [n, dim] float64, labels [n])`` of the given sizes; each class twice in every batch."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in sizes:
        labels = torch.arange(n) % classes
        out.append((torch.randn(n, dim, dtype=F64, generator=g), labels[torch.randperm(n, generator=g)]))
    return out


def _unit(x):
    return x / x.norm(dim=1, keepdim=True)


# ------------------------------------------------------------------ the queue


def test_fifo_order_and_wrap_around_match_a_naive_list():
    memory = CrossBatchMemory(7)
    naive = []
    g = torch.Generator().manual_seed(0)
    for step, n in enumerate([3, 2, 4, 1, 9, 5, 7, 2]):  # wraps, a batch larger than the memory, exact fits
        x = torch.randn(n, 2, generator=g)
        y = torch.arange(n) + 100 * step
        memory.enqueue(x, y)
        naive = (naive + list(zip(x, y.tolist(), strict=True)))[-7:]
        stored, labels = memory.contents()
        assert len(memory) == len(naive) == stored.shape[0]
        assert labels.tolist() == [label for _, label in naive]
        assert torch.equal(stored, torch.stack([row for row, _ in naive]))
    assert stored.dtype == torch.float32 and labels.dtype == torch.long


def test_enqueue_detaches_stores_float32_and_skips_non_finite_batches():
    memory = CrossBatchMemory(4)
    x = torch.randn(2, 3, dtype=torch.bfloat16, requires_grad=True)
    memory.enqueue(x, torch.tensor([0, 1]))
    stored, _ = memory.contents()
    assert stored.dtype == torch.float32 and not stored.requires_grad
    memory.enqueue(
        torch.tensor([[0.0, float("nan"), 1.0]]), torch.tensor([2])
    )  # would poison every later loss
    assert len(memory) == 2
    with pytest.raises(ValueError, match="dimension 3"):
        memory.enqueue(torch.randn(1, 5), torch.tensor([0]))


@pytest.mark.parametrize("size", [-1, 2.5, True])
def test_bad_memory_size_is_a_config_error_at_construction(size):
    for make in (SoftSilhouetteLoss, SupConLoss, SoftSilhouetteTerm, SupConTerm):
        with pytest.raises(ConfigError, match="memory_size must be an integer >= 0"):
            make(memory_size=size)


def test_memory_size_zero_is_no_memory_and_an_empty_memory_changes_nothing():
    x, y = _batches([10])[0]
    assert SoftSilhouetteLoss(memory_size=0).memory is None and SupConLoss(memory_size=0).memory is None
    for make in (SoftSilhouetteLoss, SupConLoss):
        plain, with_memory = make(), make(memory_size=16)
        assert torch.equal(plain(x, y), with_memory(x, y))  # first step: the memory is still empty
        assert len(with_memory.memory) == 10
        with_memory.eval()  # eval: neither used nor updated
        x2, y2 = _batches([6], seed=1)[0]
        assert torch.equal(plain(x2, y2), with_memory(x2, y2)) and len(with_memory.memory) == 10
        with_memory.train()
        assert not torch.allclose(plain(x2, y2), with_memory(x2, y2))  # now it is used
        with pytest.raises(ValueError, match="takes no ref_embeddings"):
            with_memory(x2, y2, x, y)


# ------------------------------------------------------------------ the losses against oracles


def _run_with_memory(loss, batches):
    """Feed ``batches`` to ``loss`` (with memory), the last one with gradient: its loss and gradient and
    the memory's contents before it."""
    for x, y in batches[:-1]:
        loss(x, y)
    memory_before = loss.memory.contents()
    x, y = batches[-1]
    x = x.clone().requires_grad_(True)
    value = loss(x, y)
    value.backward()
    return value.detach(), x.grad, memory_before


def _naive_memory(batches, size, normalize=True):
    """What the memory must hold after ``batches``: their rows (normalised), the newest ``size``."""
    rows = torch.cat([(_unit(x) if normalize else x) for x, _ in batches])[-size:]
    return rows, torch.cat([y for _, y in batches])[-size:]


@pytest.mark.parametrize(
    "options",
    [
        dict(distance="euclidean", soft_min="softmax", temperature=0.3),
        dict(distance="cosine", soft_min="hard", temperature=0.0),
        dict(distance="sqeuclidean", soft_min="logsumexp", temperature=0.5),
        dict(distance="euclidean", soft_min="softmax", temperature=0.3, normalize=False),
    ],
)
def test_pairwise_with_memory_equals_the_loop_oracle_on_the_concatenated_references(options):
    options = dict(options)
    normalize = options.pop("normalize", True)
    batches = _batches([8, 6, 10, 8, 9])  # 33 earlier samples, a memory of 13: wrapped, partly overwritten
    loss = SoftSilhouetteLoss(**options, normalize=normalize, memory_size=13)
    value, grad, (memory_rows, memory_labels) = _run_with_memory(loss, batches)
    for seen, (rows, labels) in (
        (batches[:-1], (memory_rows, memory_labels)),
        (batches, loss.memory.contents()),
    ):
        stored, stored_labels = _naive_memory(seen, 13, normalize)
        torch.testing.assert_close(rows, stored.to(rows.dtype), rtol=0, atol=1e-6)
        assert torch.equal(labels, stored_labels)

    # Oracle: the loop implementation with autograd scalars; anchors = the batch, references = the batch
    # (with gradient, each anchor excluding itself) followed by the memory (constants).
    x, y = batches[-1]
    x = x.clone().requires_grad_(True)
    rows = [list(row.unbind()) for row in x.unbind()]
    anchors = oracle.normalize_rows(rows, oracle.TORCH_OPS) if normalize else rows
    refs = anchors + [list(row) for row in memory_rows.double().unbind()]
    ref_labels = y.tolist() + memory_labels.tolist()
    terms = oracle.silhouette_terms(
        anchors, y.tolist(), refs, ref_labels, metric=options["distance"], kind=options["soft_min"],
        temperature=options["temperature"], exclude=list(range(len(anchors))), ops=oracle.TORCH_OPS,
    )  # fmt: skip
    valid = [t for t in terms if t[3]]
    expected = sum((1 - t[0]) / 2 for t in valid) / len(valid)
    expected.backward()
    torch.testing.assert_close(value, expected.detach(), rtol=1e-5, atol=1e-6)  # memory rows are float32
    torch.testing.assert_close(grad, x.grad, rtol=1e-4, atol=1e-6)
    assert grad.abs().max() > 1e-3
    # The memory matters: without it the value differs (the test can fail).
    assert abs(SoftSilhouetteLoss(**options, normalize=normalize)(*batches[-1]) - value) > 1e-3


def test_centroid_with_memory_equals_the_oracle_on_the_concatenated_references():
    batches = _batches([8, 6, 10, 8, 9], seed=3)
    loss = SoftSilhouetteLoss(soft_min="softmax", temperature=0.3, variant="centroid", memory_size=13)
    value, grad, (memory_rows, memory_labels) = _run_with_memory(loss, batches)
    x, y = batches[-1]
    refs, ref_labels = torch.cat([_unit(x), memory_rows.double()]), torch.cat([y, memory_labels])
    # The centroid oracle with anchors = references: each anchor excludes itself from its class count;
    # the batch's anchors are the first rows.
    s, _, _, valid = centroid_terms(refs, ref_labels, metric="euclidean", kind="softmax", temperature=0.3)
    per_anchor = [(1 - si) / 2 for si, v in zip(s[: len(y)], valid, strict=False) if v]
    assert value.item() == pytest.approx(sum(per_anchor) / len(per_anchor), rel=1e-6)

    # Gradient: the memory-free loss on explicit references that carry the batch with its gradient. Explicit
    # references exclude no self pair, which the centroid variant only needs for validity: all are valid.
    x_grad = x.clone().requires_grad_(True)
    refs = torch.cat([_unit(x_grad), memory_rows.double()])
    explicit = SoftSilhouetteLoss(soft_min="softmax", temperature=0.3, variant="centroid")(
        x_grad, y, refs, ref_labels
    )
    explicit.backward()
    assert explicit.item() == pytest.approx(value.item(), rel=1e-9)
    torch.testing.assert_close(grad, x_grad.grad, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("views", [1, 2])
def test_supcon_with_memory_equals_pytorch_metric_learning_cross_batch_memory(views):
    # pytorch-metric-learning enqueues first and then compares the batch with the whole queue (self pairs
    # removed); ours compares the batch with itself and the queue, then enqueues: the same references
    # when its queue is larger by one batch.
    n, size = 6 * views, 15
    batches = _batches([n] * 5, dim=4, classes=3, seed=5)
    ours = SupConLoss(temperature=0.2, memory_size=size)
    theirs = pml_losses.CrossBatchMemory(
        pml_losses.SupConLoss(temperature=0.2), embedding_size=4, memory_size=size + n
    )
    for x, y in batches:
        assert ours(x, y).item() == pytest.approx(theirs(x, y).item(), rel=1e-6)
    # Gradients: pytorch-metric-learning detaches the batch's own references, so compare with ours on
    # explicit references = the batch with gradient + the memory, each anchor excluding itself.
    from silhouette_lightning.losses import supcon_per_anchor

    x, y = _batches([n], dim=4, classes=3, seed=6)[0]
    memory_rows, memory_labels = ours.memory.contents()
    x1 = x.clone().requires_grad_(True)
    ours(x1, y).backward()
    x2 = x.clone().requires_grad_(True)
    refs = torch.cat([_unit(x2), memory_rows.double()])
    terms = supcon_per_anchor(
        _unit(x2), y, refs, torch.cat([y, memory_labels]), temperature=0.2, self_index=torch.arange(n)
    )
    (terms.loss.sum() / terms.valid.sum()).backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-7, atol=1e-9)
    assert x1.grad.abs().max() > 1e-3


# ------------------------------------------------------------------ state and training


def test_state_dict_round_trip_into_a_fresh_loss():
    loss = SoftSilhouetteLoss(memory_size=5)
    for x, y in _batches([4, 3]):
        loss(x, y)
    fresh = SoftSilhouetteLoss(memory_size=5)  # the width is not known before data flowed
    fresh.load_state_dict(loss.state_dict())
    for ours, theirs in zip(fresh.memory.contents(), loss.memory.contents(), strict=True):
        assert torch.equal(ours, theirs)
    with pytest.raises(ConfigError, match="memory_size to 5"):
        SoftSilhouetteLoss(memory_size=6).load_state_dict(loss.state_dict())


def _fit_setup(tmp_path, memory_size, max_epochs=1):
    torch.manual_seed(0)
    model = EmbeddingModule(
        SmallCNN(width=4),
        3,
        losses=[CrossEntropyTerm(), SoftSilhouetteTerm(memory_size=memory_size)],
        embedding_dim=8,
    )
    data = ImageDataModule(
        "synthetic", image_size=8, batch_size=8, options={"num_classes": 3, "samples_per_class": 12}
    )
    trainer = Trainer(
        max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, limit_val_batches=2,
    )  # fmt: skip
    return model, data, trainer


def test_checkpoint_saves_and_restores_the_queue(tmp_path):
    model, data, trainer = _fit_setup(tmp_path, memory_size=10)
    trainer.fit(model, data)
    memory = model.losses[1].loss.memory
    assert len(memory) == 10 and memory.embeddings.abs().sum() > 0
    before = [tensor.clone() for tensor in memory.buffers()]
    trainer.validate(model, data)  # eval mode: the memory is neither used nor updated
    assert all(torch.equal(a, b) for a, b in zip(before, memory.buffers(), strict=True))
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    restored = EmbeddingModule.load_from_checkpoint(
        tmp_path / "last.ckpt",
        backbone=SmallCNN(width=4),
        losses=[CrossEntropyTerm(), SoftSilhouetteTerm(memory_size=10)],
    )
    for name in ("embeddings", "labels", "position", "count"):
        assert torch.equal(getattr(restored.losses[1].loss.memory, name), getattr(memory, name)), name


def test_memory_larger_than_the_training_set_fails_before_training(tmp_path):
    model, data, trainer = _fit_setup(tmp_path, memory_size=10_000)
    data.setup("fit")
    size = len(data.split_dataset("train"))
    with pytest.raises(ConfigError, match=rf"model.losses\[1\] \('silhouette'\): memory_size=10000 .*{size}"):
        trainer.fit(model, data)
    assert trainer.global_step == 0


def _memory_config(tmp_path, memory_size):
    config = tmp_path / "memory.yaml"
    config.write_text(
        "model:\n  losses:\n    - class_path: silhouette_lightning.terms.CrossEntropyTerm\n"
        "    - class_path: silhouette_lightning.terms.SoftSilhouetteTerm\n"
        f"      init_args: {{memory_size: {memory_size}}}\n"
    )
    return str(config)


@pytest.mark.parametrize(
    ("memory_size", "message"),
    [
        (-1, "memory_size must be an integer >= 0"),
        (100_000, "memory_size=100000 is larger than the training"),
    ],
)
def test_the_cli_reports_a_bad_memory_size_in_one_line(memory_size, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["fit", *TINY, "--config", _memory_config(tmp_path, memory_size), "--trainer.fast_dev_run", "1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_cli_trains_with_a_memory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["fit", *TINY, "--config", _memory_config(tmp_path, 24), "--trainer.fast_dev_run", "2"])
