"""Training-step time of the objectives on one model: CE, CE + Silhouette (without and with a cross-batch
memory), SupCon (2 views), hybrid.

    python benchmarks/train_step.py                                  # CPU, SmallCNN(32), batch 256, 32x32
    python benchmarks/train_step.py --device cuda --backbone resnet18 --precision bf16 --batch-size 512
    python benchmarks/train_step.py --rounds 3 --steps 2 --json train_step.json      # quick

One step = forward of all views, the loss terms, backward and an AdamW step, exactly as
``EmbeddingModule.training_step`` runs it (no Trainer, no data loading). The methods are timed in
interleaved rounds (CE, CE+Sil, SupCon, hybrid, CE, ...) so that a slow phase of the machine hits all of
them alike; the table gives the median step time and its ratio to CE's, measured in the same run.
SupCon and the hybrid see two views per image, i.e. twice the backbone work of CE: the ratio includes
that, as it does in training. The memory row's queue (``--memory-size`` entries, default 4,096) is filled
before timing, so every timed step compares the batch with a full memory.

``--json PATH`` also writes the table as a list with one object per objective: ``case`` and
``objective`` (its name), ``seconds`` (the median step), ``ratio_to_ce`` and ``ours`` (true: every step
runs silhouette_lightning's module). ``benchmarks/compare_commits.py`` reads it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from silhouette_lightning.losses import CrossBatchMemory
from silhouette_lightning.models import SmallCNN, TorchvisionBackbone
from silhouette_lightning.module import EmbeddingModule
from silhouette_lightning.terms import CrossEntropyTerm, SoftSilhouetteTerm, SupConTerm

MEMORY_METHOD = "ce_silhouette + memory"
# name -> (loss terms, views, head layers): the head of each method's config in configs/method/
# (CE + Silhouette ships a one-layer head; the others keep the module's default of two).
METHODS = {
    "ce": (lambda: [CrossEntropyTerm()], 1, 2),
    "ce_silhouette": (lambda: [CrossEntropyTerm(), SoftSilhouetteTerm()], 1, 1),
    MEMORY_METHOD: (lambda size: [CrossEntropyTerm(), SoftSilhouetteTerm(memory_size=size)], 1, 1),
    "supcon (2 views)": (lambda: [SupConTerm()], 2, 2),
    "hybrid (2 views)": (lambda: [CrossEntropyTerm(), SupConTerm(), SoftSilhouetteTerm()], 2, 2),
}


def _backbone(name: str):
    if name.startswith("smallcnn"):
        return SmallCNN(width=int(name.removeprefix("smallcnn") or 32))
    return TorchvisionBackbone(name, small_images=True)


def _module(method: str, args: argparse.Namespace) -> tuple[EmbeddingModule, torch.optim.Optimizer, int]:
    terms, views, head_layers = METHODS[method]
    torch.manual_seed(0)
    module = EmbeddingModule(
        backbone=_backbone(args.backbone),
        num_classes=args.classes,
        losses=terms(args.memory_size) if method == MEMORY_METHOD else terms(),
        embedding_dim=128,
        head_layers=head_layers,
        online_linear_eval=method.startswith("supcon"),
    ).to(args.device)
    module.train()
    if method == MEMORY_METHOD:  # a full queue of unit vectors, as after memory_size / batch steps
        queue = torch.nn.functional.normalize(torch.randn(args.memory_size, 128), dim=1)
        labels = torch.randint(0, args.classes, (args.memory_size,))
        memory = next(m for m in module.modules() if isinstance(m, CrossBatchMemory))
        memory.enqueue(queue.to(args.device), labels.to(args.device))
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    return module, optimizer, views


def _step(module, optimizer, images, labels, autocast) -> None:
    with autocast:
        loss = module.training_step((images, labels), 1)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--backbone", default="smallcnn32", help="smallcnn<width> or a torchvision model name"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--memory-size", type=int, default=4096, help="cross-batch memory of the memory row")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4, help="steps per method per round")
    parser.add_argument("--precision", choices=("32", "bf16", "fp16"), default="32")
    parser.add_argument("--json", help="also write the measured times here (see above)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
    scaler_note = " (fp16 without a grad scaler: timing only)" if args.precision == "fp16" else ""

    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, args.classes, (args.batch_size,), generator=generator).to(device)
    shape = (args.batch_size, 2, 3, args.image_size, args.image_size)
    images_2v = torch.randn(shape, generator=generator).to(device)
    setups = {method: _module(method, args) for method in METHODS}
    # The module logs metrics; outside a Trainer that only warns, so silence it for the timing loop.
    for module, _, _ in setups.values():
        module.log = lambda *a, **k: None
    times: dict[str, list[float]] = {method: [] for method in METHODS}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for module, optimizer, views in setups.values():  # warm-up
        _step(module, optimizer, images_2v[:, :views], labels, autocast)
    for _ in range(args.rounds):
        for method, (module, optimizer, views) in setups.items():
            images = images_2v[:, :views]
            sync()
            start = time.perf_counter()
            for _ in range(args.steps):
                _step(module, optimizer, images, labels, autocast)
            sync()
            times[method].append((time.perf_counter() - start) / args.steps)

    print(
        f"device={device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
        f"torch {torch.__version__}, threads={torch.get_num_threads()}, backbone={args.backbone}, "
        f"batch={args.batch_size}, {args.image_size}x{args.image_size}, "
        f"precision={args.precision}{scaler_note}, memory_size={args.memory_size}\n"
    )
    ce = statistics.median(times["ce"])
    print("| objective | median step (ms) | × CE |\n|---|---|---|")
    records = []
    for method, values in times.items():
        median = statistics.median(values)
        print(f"| {method} | {median * 1e3:.1f} | {median / ce:.2f} |")
        records.append(
            dict(case=method, objective=method, seconds=median, ratio_to_ce=median / ce, ours=True)
        )
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
