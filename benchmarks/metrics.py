"""Time, peak memory and agreement of the exact silhouette score, against scikit-learn in the same run.

    python benchmarks/metrics.py                          # N = 2,000 and 20,000, D = 128, C = 100
    python benchmarks/metrics.py --sizes 2000 --repeats 5
    python benchmarks/metrics.py --chunk-sizes 512 768 1024 2048   # tile-size sweep
    python benchmarks/metrics.py --sizes 2000 --budget 0 --no-memory --json metrics.json   # quick

Data: ``C`` Gaussian clusters in ``D`` dimensions (unit noise, centres at scale 0.5, so the clusters
overlap and the silhouettes spread over [-1, 1]), labels uniform over the classes. Each row computes the
silhouette score of all ``N`` points on the CPU:

* ``sklearn.metrics.silhouette_score`` on float64 input (the reference: ratios are its time divided by
  the row's) and on float32 input (then scikit-learn works partly in float32);
* ``SilhouetteScore`` (the torchmetrics Metric: ``update`` in batches of 1,000, then ``compute``) on
  float64 and on float32 input (computed in float64 either way), and with ``dtype=torch.float32``.

Time: the median of at least ``--repeats`` runs (more while they take under ``--budget`` seconds);
the cases take turns within each round, so a change in the machine's load hits all of them alike,
with a 0.2 s pause before each run (the other library's thread pool stops spinning meanwhile).
Memory: in a fresh subprocess per case, the growth of the peak resident set size (``VmHWM``, reset
through ``/proc/self/clear_refs``) over the inputs. |Δ score| is against scikit-learn on float64
input; max |Δ s_i| compares the per-sample values
(``silhouette_samples_exact`` vs ``sklearn.metrics.silhouette_samples``), float64, same data. Chunk
``auto`` is the library's default tile size (``chunk_size=None``: 1,024 on the CPU).

``--json PATH`` also writes the table as a list with one object per row: ``case`` (``"N=2000
SilhouetteScore (float64)"``, with ``" chunk=512"`` when ``--chunk-sizes`` is given), ``n``,
``implementation``, ``chunk`` (null = auto), ``seconds`` (the median), ``peak_memory_mb`` (null with
``--no-memory``), ``score`` and ``ours`` (false for scikit-learn's rows). ``benchmarks/compare_commits.py``
reads it.

Run it on an otherwise idle machine: with more runnable threads than cores, every parallel torch op can
wait a scheduler time slice for its second thread, which dominates at small N (the load average is
printed at the start and the end of the run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sklearn
import sklearn.metrics
import torch
from resident_memory import peak_extra_mb  # benchmarks/ is on sys.path when run as a script

from silhouette_lightning.metrics import SilhouetteScore, silhouette_samples_exact

Inputs = tuple[np.ndarray, np.ndarray]  # float64 points [N, D], int64 labels [N]
Chunk = int | None  # None: the library's default tile size
UPDATE_BATCH = 1000
PAUSE_S = 0.2


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Inputs, Chunk], float]  # (inputs, chunk_size) -> score
    ours: bool = True


def _sklearn(dtype: type) -> Callable[[Inputs, Chunk], float]:
    def run(inputs: Inputs, chunk_size: Chunk) -> float:
        x, y = inputs
        return float(sklearn.metrics.silhouette_score(x.astype(dtype, copy=False), y))

    return run


def _metric(input_dtype: torch.dtype, compute_dtype: torch.dtype) -> Callable[[Inputs, Chunk], float]:
    def run(inputs: Inputs, chunk_size: Chunk) -> float:
        x = torch.from_numpy(inputs[0]).to(input_dtype)
        y = torch.from_numpy(inputs[1])
        metric = SilhouetteScore(chunk_size=chunk_size, dtype=compute_dtype)
        for start in range(0, len(y), UPDATE_BATCH):
            metric.update(x[start : start + UPDATE_BATCH], y[start : start + UPDATE_BATCH])
        return metric.compute().item()

    return run


CASES = [
    Case("sklearn silhouette_score (float64)", _sklearn(np.float64), ours=False),
    Case("sklearn silhouette_score (float32)", _sklearn(np.float32), ours=False),
    Case("SilhouetteScore (float64)", _metric(torch.float64, torch.float64)),
    Case("SilhouetteScore (float32 input)", _metric(torch.float32, torch.float64)),
    Case("SilhouetteScore (float32 input, dtype=float32)", _metric(torch.float32, torch.float32)),
]
REFERENCE = CASES[0]


def make_inputs(n: int, dim: int, num_classes: int, seed: int = 0) -> Inputs:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, dim)) * 0.5
    labels = rng.integers(0, num_classes, n)
    return centres[labels] + rng.normal(size=(n, dim)), labels


def time_cases(
    cases: list[tuple[Case, Chunk]], inputs: Inputs, repeats: int, budget_s: float
) -> list[tuple[float, float]]:
    """(median seconds, score) per (case, chunk size): at least ``repeats`` rounds, more (up to 25) while
    the rounds took less than ``budget_s``; the cases take turns within each round."""
    times: list[list[float]] = [[] for _ in cases]
    scores: list[float] = [0.0] * len(cases)
    for (case, chunk), _ in zip(cases, times, strict=True):  # warm-up (thread pools, first allocations)
        case.run(_head(inputs, 200), chunk)
    rounds, spent = 0, 0.0
    while rounds < repeats or (spent < budget_s and rounds < 25):
        for index, (case, chunk) in enumerate(cases):
            # numpy's OpenBLAS and torch's OpenMP threads busy-wait for a while after their last task;
            # without a pause each case would start while the other library's threads still spin.
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            scores[index] = case.run(inputs, chunk)
            times[index].append(time.perf_counter() - start)
            spent += times[index][-1]
        rounds += 1
    return [(statistics.median(t), s) for t, s in zip(times, scores, strict=True)]


def _head(inputs: Inputs, n: int) -> Inputs:
    return inputs[0][:n], inputs[1][:n]


def peak_memory_mb(case: Case, n: int, dim: int, num_classes: int, chunk_size: Chunk) -> float:
    """Peak extra resident memory of one score computation, over the inputs (MB). Run in a fresh process."""
    case.run(make_inputs(200, dim, num_classes), chunk_size)  # thread pools and allocator state
    inputs = make_inputs(n, dim, num_classes)
    return peak_extra_mb(lambda: case.run(inputs, chunk_size))


def _memory_in_subprocess(
    case_index: int, n: int, args: argparse.Namespace, chunk_size: Chunk
) -> float | None:
    child = json.dumps([case_index, n, args.dim, args.classes, chunk_size])
    result = subprocess.run(
        [sys.executable, __file__, "--memory-child", child], capture_output=True, text=True
    )
    if result.returncode != 0:
        return None
    return float(result.stdout.strip().splitlines()[-1])


def samples_difference(inputs: Inputs) -> float:
    """Max |s_i(ours) - s_i(scikit-learn)| over all samples, float64."""
    x, y = inputs
    ours = silhouette_samples_exact(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    return float(np.abs(ours - sklearn.metrics.silhouette_samples(x, y)).max())


def run_table(args: argparse.Namespace, records: list[dict] | None = None) -> dict[int, tuple[float, float]]:
    """Prints the table; returns {N: (speed-up of SilhouetteScore float64, its |Δ score|)} and appends one
    ``--json`` object per row to ``records``."""
    print(f"D = {args.dim}, C = {args.classes}; time = median of >= {args.repeats} runs; ", end="")
    print("memory = peak extra resident memory (MB) in a fresh process\n")
    print("| N | implementation | chunk | time (s) | speed-up vs sklearn float64 | peak memory (MB) "
          "| score | abs. diff. score | max abs. diff. s_i |")  # fmt: skip
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    summary: dict[int, tuple[float, float]] = {}
    for n in args.sizes:
        inputs = make_inputs(n, args.dim, args.classes)
        cases = [(case, args.chunk_sizes[0]) for case in CASES if not case.ours]
        cases += [(case, chunk) for case in CASES if case.ours for chunk in args.chunk_sizes]
        results = time_cases(cases, inputs, args.repeats, args.budget)
        reference_time, reference_score = results[cases.index((REFERENCE, args.chunk_sizes[0]))]
        sample_diff = samples_difference(inputs)
        for (case, chunk), (seconds, score) in zip(cases, results, strict=True):
            memory = None
            if not args.no_memory:
                memory = _memory_in_subprocess(CASES.index(case), n, args, chunk)
            speedup = reference_time / seconds
            if case.name == "SilhouetteScore (float64)" and chunk == args.chunk_sizes[0]:
                summary[n] = (speedup, abs(score - reference_score))
            chunk = chunk if case.ours else None
            if records is not None:
                label = f"N={n} {case.name}" + (f" chunk={chunk}" if chunk is not None else "")
                records.append(
                    dict(
                        case=label, n=n, implementation=case.name, chunk=chunk, seconds=seconds,
                        peak_memory_mb=memory, score=score, ours=case.ours,
                    )
                )  # fmt: skip
            shown = ("auto" if chunk is None else chunk) if case.ours else "–"
            print(
                f"| {n:,} | {case.name} | {shown} | {seconds:.3f} | {speedup:.2f} "
                f"| {f'{memory:.0f}' if memory is not None else '–'} | {score:.10f} "
                f"| {abs(score - reference_score):.1e} "
                f"| {f'{sample_diff:.1e}' if case.name == 'SilhouetteScore (float64)' else ''} |"
            )
        sys.stdout.flush()
    return summary


def _environment() -> str:
    blas = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"scikit-learn {sklearn.__version__}; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load}; BLAS environment: {blas or 'none set'}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_000, 20_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds at least")
    parser.add_argument("--budget", type=float, default=3.0, help="more rounds while they took less (s)")
    parser.add_argument(
        "--chunk-sizes",
        type=int,
        nargs="+",
        default=[None],
        help="tile sizes to compare (default: the library's, chunk_size=None)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--json", help="also write the measured times here (see above)")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        index, n, dim, num_classes, chunk_size = json.loads(args.memory_child)
        print(peak_memory_mb(CASES[index], n, dim, num_classes, chunk_size))
        return

    print(f"command: python benchmarks/metrics.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"{_environment()}\n")
    records: list[dict] = []
    summary = run_table(args, records)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2))
    print(f"\nat the end: {_environment()}")
    for n, (speedup, difference) in summary.items():
        target = " (target at N = 20,000: >= 3)" if n == 20_000 else ""
        print(
            f"N = {n:,}: SilhouetteScore (float64) {speedup:.2f}x faster than scikit-learn{target}, "
            f"|Δ score| = {difference:.1e} (target <= 1e-5)"
        )


if __name__ == "__main__":
    main()
