"""Forward + backward time and peak memory of the losses, against pytorch-metric-learning in the same run.

    python benchmarks/losses.py                         # CPU (and CUDA when present), N in 256..16384
    python benchmarks/losses.py --device cuda --sizes 4096 16384
    python benchmarks/losses.py --scale                 # also: a centroid step at N=65,536, C=1,000
    python benchmarks/losses.py --autocast              # also: bf16 (and fp16 on CUDA) autocast vs float32
    python benchmarks/losses.py --sizes 256 1024 --no-memory --budget 0.5 --json losses.json   # quick

Every case gets embeddings ``[N, D]`` (``[N, 2, D]`` for the two-view rows, i.e. 2N samples) with
``requires_grad`` and labels from ``C`` classes, and times ``loss(x, y).backward()``: the median of
several runs after a warm-up. Peak memory is measured in a fresh subprocess per case: on the CPU the
growth of the resident set size's high-water mark (``VmHWM``, reset first) over the inputs, on CUDA
``torch.cuda.max_memory_allocated`` over the inputs. Ratios are against pytorch-metric-learning's
``SupConLoss`` on the same N embeddings (and, for the two-view target, on the 2N of the two views).

``--json PATH`` also writes the table as a list with one object per timed case: ``case`` (``"cpu N=256
Soft Silhouette (pairwise)"``), ``device``, ``n``, ``loss``, ``samples``, ``seconds`` (the median of
forward and backward), ``peak_memory_mb`` (null with ``--no-memory``) and ``ours`` (false for the cases
that do not use silhouette_lightning). ``benchmarks/compare_commits.py`` reads it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from resident_memory import peak_extra_mb  # benchmarks/ is on sys.path when run as a script

from silhouette_lightning.losses import SoftSilhouetteLoss, SupConLoss

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Case:
    name: str
    views: int  # 2: the input is [N, 2, D] (2N samples)
    build: Callable[[int, int], LossFn]  # (num_classes, dim) -> loss(x, y)
    pairs_per_sample: int = 1  # how the largest intermediate scales: (views * N)^2 * this
    ours: bool = False  # uses silhouette_lightning (the others are references)

    def samples(self, n: int) -> int:
        return self.views * n


def _flattened(loss: LossFn) -> LossFn:
    """pytorch-metric-learning takes [2N, D]: the views flattened image-major, labels repeated."""
    return lambda x, y: loss(x.flatten(0, 1), y.repeat_interleave(x.shape[1])) if x.ndim == 3 else loss(x, y)


def _cross_entropy(num_classes: int, dim: int) -> LossFn:
    # A linear classifier + cross-entropy on the same embeddings, for scale.
    classifier = torch.nn.Linear(dim, num_classes)

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(classifier.to(x.device)(x), y)

    return loss


def _triplet_batch_hard(num_classes: int, dim: int) -> LossFn:
    loss, miner = pml_losses.TripletMarginLoss(margin=0.1), pml_miners.BatchHardMiner()
    return lambda x, y: loss(x, y, miner(x, y))


CASES = [
    Case("Soft Silhouette (pairwise)", 1, lambda c, d: SoftSilhouetteLoss(), ours=True),
    Case(
        "Soft Silhouette (centroid)",
        1,
        lambda c, d: SoftSilhouetteLoss(variant="centroid"),
        pairs_per_sample=0,
        ours=True,
    ),
    Case("SupCon (ours, 1 view)", 1, lambda c, d: SupConLoss(temperature=0.1), ours=True),
    Case("SupCon (ours, 2 views)", 2, lambda c, d: SupConLoss(temperature=0.1), ours=True),
    Case("PML SupConLoss", 1, lambda c, d: pml_losses.SupConLoss(temperature=0.1)),
    Case("PML SupConLoss (2 views)", 2, lambda c, d: _flattened(pml_losses.SupConLoss(temperature=0.1))),
    Case("PML TripletMarginLoss (batch-hard)", 1, _triplet_batch_hard),
    Case("cross-entropy (linear head)", 1, _cross_entropy, pairs_per_sample=0),
]
REFERENCE = "PML SupConLoss"


def _inputs(case: Case, n: int, dim: int, num_classes: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    shape = (n, case.views, dim) if case.views > 1 else (n, dim)
    x = torch.randn(*shape, generator=g).to(device).requires_grad_(True)
    y = torch.randint(0, num_classes, (n,), generator=g).to(device)
    return x, y


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_case(case: Case, n: int, dim: int, num_classes: int, device: str, budget_s: float) -> float:
    """Median seconds of one forward + backward: at least 3 runs after a warm-up, more within the budget."""
    x, y = _inputs(case, n, dim, num_classes, device)
    loss = case.build(num_classes, dim)

    def step() -> float:
        x.grad = None
        _sync(device)
        start = time.perf_counter()
        loss(x, y).backward()
        _sync(device)
        return time.perf_counter() - start

    step()
    times = [step() for _ in range(3)]
    while sum(times) < budget_s and len(times) < 20:
        times.append(step())
    return statistics.median(times)


def peak_memory_mb(case: Case, n: int, dim: int, num_classes: int, device: str) -> float:
    """Peak extra memory of one forward + backward, in a fresh process (MB)."""
    loss = case.build(num_classes, dim)
    # Warm up on a tiny batch: the first backward allocates autograd's and the thread pool's own state.
    loss(*_inputs(case, 16, dim, num_classes, device)).backward()
    x, y = _inputs(case, n, dim, num_classes, device)
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        loss(x, y).backward()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    # Linux: reset the peak resident set size, so only this forward + backward counts.
    return peak_extra_mb(lambda: loss(x, y).backward())


def _memory_in_subprocess(case_index: int, n: int, args: argparse.Namespace, device: str) -> float | None:
    command = [
        sys.executable,
        __file__,
        "--memory-child",
        json.dumps([case_index, n, args.dim, args.classes, device]),
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        return None
    return float(result.stdout.strip().splitlines()[-1])


def _feasible(case: Case, n: int, max_pairs: int) -> bool:
    return case.pairs_per_sample == 0 or case.samples(n) ** 2 * case.pairs_per_sample <= max_pairs


def run_table(
    args: argparse.Namespace, device: str, records: list[dict] | None = None
) -> dict[tuple[str, int], float]:
    """Prints the table; returns {(loss, N): seconds}; appends the ``--json`` objects to ``records``."""
    print(f"\n### {device.upper()}: {_device_name(device)}\n")
    print(f"D = {args.dim}, C = {args.classes}; time = median forward+backward; memory = peak extra (MB)\n")
    print("| N | loss | samples | time (ms) | × PML SupCon | peak memory (MB) |")
    print("|---:|---|---:|---:|---:|---:|")
    times: dict[tuple[str, int], float] = {}
    for n in args.sizes:
        rows = []
        for index, case in enumerate(CASES):
            if not _feasible(case, n, args.max_pairs):
                rows.append((case, None, None))
                continue
            seconds = time_case(case, n, args.dim, args.classes, device, args.budget)
            times[(case.name, n)] = seconds
            memory = None if args.no_memory else _memory_in_subprocess(index, n, args, device)
            rows.append((case, seconds, memory))
        reference = times.get((REFERENCE, n))
        for case, seconds, memory in rows:
            if seconds is None:
                print(f"| {n} | {case.name} | {case.samples(n)} | skipped (> --max-pairs) | | |")
                continue
            if records is not None:
                records.append(
                    dict(
                        case=f"{device} N={n} {case.name}", device=device, n=n, loss=case.name,
                        samples=case.samples(n), seconds=seconds, peak_memory_mb=memory, ours=case.ours,
                    )
                )  # fmt: skip
            ratio = f"{seconds / reference:.3f}" if reference else "–"
            mem = f"{memory:.0f}" if memory is not None else "–"
            print(f"| {n} | {case.name} | {case.samples(n)} | {seconds * 1e3:.1f} | {ratio} | {mem} |")
        sys.stdout.flush()
    return times


def print_targets(times: dict[tuple[str, int], float]) -> None:
    sil, sup, sup2 = (times.get((name, 4096)) for name in (CASES[0].name, REFERENCE, CASES[5].name))
    if sil and sup:
        print(f"\nTarget: Soft Silhouette (pairwise) / PML SupConLoss at N=4096: {sil / sup:.3f} (≤ 0.25)")
    if sil and sup2:
        print(
            "Target: Soft Silhouette (pairwise, N=4096) / PML SupConLoss on the 2 views (8192): "
            f"{sil / sup2:.3f} (≤ 0.05)"
        )


def run_scale(device: str) -> None:
    """The centroid variant on a very large batch: one training step's loss part."""
    n, dim, num_classes = 65_536, 128, 1_000
    case = Case("Soft Silhouette (centroid)", 1, lambda c, d: SoftSilhouetteLoss(variant="centroid"))
    seconds = time_case(case, n, dim, num_classes, device, budget_s=2.0)
    command = [sys.executable, __file__, "--memory-child", json.dumps([1, n, dim, num_classes, device])]
    memory = float(subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()[-1])
    print(
        f"\nScale: centroid Soft Silhouette, N = {n:,}, D = {dim}, C = {num_classes:,} on {device}: "
        f"{seconds * 1e3:.0f} ms forward+backward, peak extra memory {memory:.0f} MB (target < 2048 MB)"
    )


def run_autocast_check(device: str, n: int = 2048, dim: int = 128, num_classes: int = 100) -> None:
    """Our losses under fp16/bf16 autocast (embeddings from a Linear layer) against float32."""
    print(f"\nMixed precision on {device}: N = {n}, embeddings from a Linear layer computed under autocast\n")
    print(
        "| loss | autocast dtype | loss (float32) | abs. Δ loss | gradient finite "
        "| max abs. Δ grad / max abs. grad |"
    )
    print("|---|---|---:|---:|---|---:|")
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(n, dim, generator=g).to(device)
    labels = torch.randint(0, num_classes, (n,), generator=g).to(device)
    layer = torch.nn.Linear(dim, dim).to(device)
    losses = {
        "Soft Silhouette (pairwise)": SoftSilhouetteLoss(),
        "Soft Silhouette (centroid)": SoftSilhouetteLoss(variant="centroid"),
        "SupCon (ours)": SupConLoss(temperature=0.1),
    }
    dtypes = [torch.bfloat16] + ([torch.float16] if device == "cuda" else [])
    for name, loss in losses.items():
        results = {}
        for dtype in [None, *dtypes]:
            layer.zero_grad()
            with torch.autocast(device_type=device, dtype=dtype or torch.float32, enabled=dtype is not None):
                value = loss(layer(inputs), labels)
            value.backward()
            results[dtype] = (value.item(), layer.weight.grad.clone())
        reference, reference_grad = results[None]
        for dtype in dtypes:
            value, grad = results[dtype]
            finite = bool(torch.isfinite(grad).all())
            rel = ((grad - reference_grad).abs().max() / reference_grad.abs().max()).item()
            dtype_name = str(dtype).removeprefix("torch.")
            print(
                f"| {name} | {dtype_name} | {reference:.5f} | {abs(value - reference):.2e} "
                f"| {'yes' if finite else 'NO'} | {rel:.2e} |"
            )


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024, 4096, 16384])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto: the CPU, then CUDA as well when available",
    )
    parser.add_argument(
        "--budget", type=float, default=1.0, help="seconds of timed runs per case (min 1 run)"
    )
    parser.add_argument(
        "--max-pairs",
        type=int,
        default=2**28,
        help="skip cases whose (samples)^2 exceeds this (PML's all-pairs matrices)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--scale", action="store_true", help="also run the N=65,536, C=1,000 centroid step")
    parser.add_argument(
        "--autocast", action="store_true", help="also compare bf16/fp16 autocast with float32"
    )
    parser.add_argument("--json", help="also write the measured times here (see above)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        index, n, dim, num_classes, device = json.loads(args.memory_child)
        print(peak_memory_mb(CASES[index], n, dim, num_classes, device))
        return

    devices = ["cpu", "cuda"] if args.device == "auto" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    command = " ".join(sys.argv[1:] if argv is None else argv)
    print(f"torch {torch.__version__}; command: python benchmarks/losses.py {command}")
    records: list[dict] = []
    for device in devices:
        print_targets(run_table(args, device, records))
        if args.scale:
            run_scale(device)
        if args.autocast:
            run_autocast_check(device)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2))


if __name__ == "__main__":
    main()
