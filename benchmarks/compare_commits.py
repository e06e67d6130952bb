"""Did a change make the library slower? The benchmarks' times at two versions, side by side.

    python benchmarks/compare_commits.py BASE                  # BASE against this working tree
    python benchmarks/compare_commits.py BASE HEAD             # two commits (any git revision)
    python benchmarks/compare_commits.py HEAD~1 --benchmarks losses metrics --rounds 5
    python benchmarks/compare_commits.py main --full           # the benchmarks' own (large) sizes
    python benchmarks/compare_commits.py main --losses-args="--sizes 4096 --max-pairs 20000000"

How: BASE (and HEAD, when given) is checked out as a detached ``git worktree`` in a temporary folder;
without HEAD the other version is this working tree, uncommitted changes included. THIS tree's benchmark
scripts (``benchmarks/losses.py``, ``metrics.py``, ``train_step.py``) then run against each version of
the library, with ``PYTHONPATH`` set to that version's tree, so the timing code is identical and only the
library differs (the scripts import only the public API, which both versions have). Each run is a fresh
process that writes its times with ``--json``. The versions alternate within every round, and the order
flips from one round to the next (BASE HEAD, HEAD BASE, ...), so a change in the machine's load hits
both alike. Per case: the median over the rounds of each version's time (each itself a median of several
runs inside the benchmark), and the ratio HEAD / BASE of those medians; "per round" is the range of the
ratios of the two runs of each round. The worktrees are removed at the end, also after an error or Ctrl-C.

Cases marked † do not use silhouette_lightning (pytorch-metric-learning, scikit-learn, a plain
cross-entropy): both versions run the same code there, so their ratios show how much the machine's
load alone moves a ratio. Nothing is asserted: it prints. A benchmark that fails at one version (say a
public name it imports does not exist there) is reported and skipped; the exit status is then 1.

Sizes: by default a quick configuration (``QUICK`` below; each run of a benchmark took 15-30 s on this
project's 2 CPU cores while other jobs shared them, so 3 rounds of the three at two versions take about
7-8 minutes there); ``--full`` runs each benchmark at its own default sizes (without its memory
subprocesses: only times are compared; roughly an hour on 2 cores, estimated). The
``--<benchmark>-args`` strings are appended to either, so a repeated option overrides it. Run it on an
otherwise idle machine: ``--threads 1`` (``OMP_NUM_THREADS=1`` for the runs) steadies the times when
other jobs share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

BENCHMARKS = ("losses", "metrics", "train_step")
QUICK = {  # arguments of each benchmark script
    "losses": "--sizes 256 1024 --budget 0.5 --no-memory",
    "metrics": "--sizes 2000 5000 --budget 0 --no-memory",
    "train_step": "--backbone smallcnn16 --batch-size 128 --image-size 16 --rounds 3 --steps 2",
}
FULL = {"losses": "--no-memory", "metrics": "--no-memory", "train_step": ""}
CONTROL_MARK = " †"


@dataclass
class Version:
    """One version of the library: ``"BASE"`` or ``"HEAD"``, a label, the tree it is imported from."""

    role: str
    label: str
    tree: Path


@dataclass
class Measurements:
    """Per benchmark: {role: {case: seconds of each round}}, which cases are ours, and failed runs."""

    seconds: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)
    ours: dict[str, dict[str, bool]] = field(default_factory=dict)
    failures: dict[str, dict[str, str]] = field(default_factory=dict)  # benchmark -> role -> message

    def add(self, benchmark: str, role: str, records: list[dict]) -> None:
        by_case = self.seconds.setdefault(benchmark, {}).setdefault(role, {})
        for record in records:
            by_case.setdefault(record["case"], []).append(float(record["seconds"]))
            self.ours.setdefault(benchmark, {})[record["case"]] = bool(record.get("ours", True))


@dataclass(frozen=True)
class Row:
    case: str
    base: float | None  # median seconds over the rounds; None: not measured at that version
    head: float | None
    ratio: float | None  # head / base
    round_ratios: tuple[float, ...]  # head / base of each round that measured both
    ours: bool


def compare(measurements: Measurements, benchmark: str) -> list[Row]:
    """One row per case measured at either version, in the order the benchmark reported them."""
    seconds = measurements.seconds.get(benchmark, {})
    base, head = seconds.get("BASE", {}), seconds.get("HEAD", {})
    rows = []
    for case in dict.fromkeys([*base, *head]):
        b = statistics.median(base[case]) if case in base else None
        h = statistics.median(head[case]) if case in head else None
        pairs = zip(base.get(case, []), head.get(case, []), strict=False)
        rows.append(
            Row(
                case=case,
                base=b,
                head=h,
                ratio=h / b if b and h is not None else None,
                round_ratios=tuple(y / x for x, y in pairs if x > 0),
                ours=measurements.ours.get(benchmark, {}).get(case, True),
            )
        )
    return rows


def _milliseconds(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 100 else f"{ms:,.0f}"


def markdown_table(rows: list[Row]) -> str:
    lines = [
        "| case | BASE (ms) | HEAD (ms) | HEAD / BASE | per round |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        if row.ratio is not None:
            ratio = f"{row.ratio:.3f}"
        else:
            ratio = "missing at " + ("BASE" if row.base is None else "HEAD")
        spread = (
            f"{min(row.round_ratios):.2f}–{max(row.round_ratios):.2f}" if len(row.round_ratios) > 1 else ""
        )
        name = row.case + ("" if row.ours else CONTROL_MARK)
        lines.append(
            f"| {name} | {_milliseconds(row.base)} | {_milliseconds(row.head)} | {ratio} | {spread} |"
        )
    return "\n".join(lines)


def summary_line(rows_by_benchmark: dict[str, list[Row]]) -> str:
    """The worst (largest) HEAD / BASE ratio of silhouette_lightning's cases, and the controls' range."""
    ours = [(row.ratio, b, row.case) for b, rows in rows_by_benchmark.items() for row in rows if row.ours]
    ours = [item for item in ours if item[0] is not None]
    controls = [row.ratio for rows in rows_by_benchmark.values() for row in rows if not row.ours]
    controls = [ratio for ratio in controls if ratio is not None]
    if not ours:
        line = "Worst ratio HEAD / BASE: none (no silhouette_lightning case was measured at both versions)."
    else:
        ratio, benchmark, case = max(ours)
        line = f"Worst ratio HEAD / BASE: {ratio:.3f} ({benchmark}: {case})."
    if controls:
        line += (
            f" Cases without silhouette_lightning (†): {min(controls):.3f}–{max(controls):.3f}, "
            "the noise of this machine."
        )
    return line


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def describe(repo: Path, revision: str) -> str:
    """``abc1234 (subject)`` of a revision; a clear error when git does not know it."""
    try:
        return git(repo, "log", "-1", "--format=%h (%s)", f"{revision}^{{commit}}", "--")
    except subprocess.CalledProcessError as error:
        message = f"compare_commits: {revision!r} is not a commit of {repo}: {error.stderr.strip()}"
        raise SystemExit(message) from None


@contextmanager
def temporary_worktrees(repo: Path, revisions: list[str]) -> Iterator[list[Path]]:
    """Detached worktrees of ``revisions`` in a temporary folder; removed (and pruned) on the way out."""
    folder = Path(tempfile.mkdtemp(prefix="compare-commits-"))
    added: list[Path] = []
    try:
        for index, revision in enumerate(revisions):
            path = folder / f"tree{index}"
            git(repo, "worktree", "add", "--detach", "--quiet", str(path), f"{revision}^{{commit}}")
            added.append(path)
        yield added
    finally:
        for path in added:
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], capture_output=True
            )
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


def library_environment(tree: Path, threads: int | None) -> dict[str, str]:
    environment = dict(os.environ, PYTHONPATH=str(tree))
    if threads is not None:
        environment["OMP_NUM_THREADS"] = str(threads)
    return environment


def check_import_location(version: Version, threads: int | None) -> None:
    """Make sure that a run with this version's environment imports the library from its tree."""
    code = "import importlib.util as u; print(u.find_spec('silhouette_lightning').origin)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=library_environment(version.tree, threads),
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    origin = Path(result.stdout.strip()).resolve() if result.returncode == 0 else None
    if origin is None or not origin.is_relative_to(version.tree.resolve()):
        raise SystemExit(
            f"compare_commits: with PYTHONPATH={version.tree}, silhouette_lightning is imported from "
            f"{origin or result.stderr.strip()}, not from that tree."
        )


def run_benchmark(
    script: Path, arguments: list[str], version: Version, json_path: Path, scratch: Path, threads: int | None
) -> tuple[list[dict] | None, str]:
    """(the ``--json`` records, "") of one run, or (None, why it failed)."""
    command = [sys.executable, str(script), *arguments, "--json", str(json_path)]
    result = subprocess.run(
        command, env=library_environment(version.tree, threads), cwd=scratch, capture_output=True, text=True
    )
    if result.returncode != 0:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
        return None, f"exit status {result.returncode}: " + " / ".join(tail)
    try:
        records = json.loads(json_path.read_text())
        if not all("case" in record and "seconds" in record for record in records):
            return None, f"{json_path.name} lacks 'case' or 'seconds'"
    except (OSError, ValueError) as error:
        return None, f"no readable --json output ({error})"
    return records, ""


def measure(
    versions: list[Version],
    benchmarks: list[str],
    arguments: dict[str, list[str]],
    scripts: Path,
    rounds: int,
    threads: int | None,
    work: Path,
) -> Measurements:
    """Run every benchmark at every version, ``rounds`` times; within a round the versions take turns,
    in the opposite order in the next round. A benchmark that fails at a version is not run again."""
    measurements = Measurements()
    scratch = work / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    for round_index in range(rounds):
        order = versions if round_index % 2 == 0 else versions[::-1]
        for benchmark in benchmarks:
            for version in order:
                if version.role in measurements.failures.get(benchmark, {}):
                    continue
                json_path = work / f"{benchmark}-{version.role}-{round_index}.json"
                start = time.perf_counter()
                records, error = run_benchmark(
                    scripts / f"{benchmark}.py", arguments[benchmark], version, json_path, scratch, threads
                )
                took = time.perf_counter() - start
                note = f"{took:.0f} s" if records is not None else f"FAILED: {error}"
                print(
                    f"round {round_index + 1}/{rounds}: {benchmark} at {version.role}: {note}",
                    file=sys.stderr,
                )
                if records is None:
                    measurements.failures.setdefault(benchmark, {})[version.role] = error
                else:
                    measurements.add(benchmark, version.role, records)
    return measurements


def report(measurements: Measurements, benchmarks: list[str], arguments: dict[str, list[str]]) -> str:
    out = []
    rows_by_benchmark = {}
    for benchmark in benchmarks:
        out.append(f"\n### {benchmark}\n")
        out.append(f"`python benchmarks/{benchmark}.py {shlex.join(arguments[benchmark])}`\n")
        for role, message in measurements.failures.get(benchmark, {}).items():
            out.append(f"Skipped at {role}: {message}\n")
        rows = compare(measurements, benchmark)
        if rows:
            rows_by_benchmark[benchmark] = rows
            out.append(markdown_table(rows))
    out.append("\n" + summary_line(rows_by_benchmark))
    return "\n".join(out)


def _raise_on_termination(signum, frame) -> None:
    raise SystemExit(128 + signum)  # so that the worktrees are removed as after Ctrl-C


def main(argv: list[str] | None = None, repo: Path | None = None, scripts: Path | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", help="the version before the change (a commit, branch, tag, HEAD~1, ...)")
    parser.add_argument("head", nargs="?", help="the version after it (default: this working tree)")
    parser.add_argument("--benchmarks", nargs="+", choices=BENCHMARKS, default=list(BENCHMARKS))
    parser.add_argument("--rounds", type=int, default=3, help="runs of each benchmark per version")
    parser.add_argument("--full", action="store_true", help="the benchmarks' own sizes, not the quick ones")
    for benchmark in BENCHMARKS:
        parser.add_argument(
            f"--{benchmark.replace('_', '-')}-args",
            default="",
            help=f"more arguments for benchmarks/{benchmark}.py, appended (write --{benchmark}-args='...')",
        )
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the runs (default: inherited)")
    parser.add_argument("--json", help="also write every round's seconds per version and case here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")

    scripts = scripts or Path(__file__).resolve().parent
    repo = repo or Path(git(scripts, "rev-parse", "--show-toplevel"))
    arguments = {
        b: shlex.split((FULL if args.full else QUICK)[b]) + shlex.split(getattr(args, f"{b}_args"))
        for b in BENCHMARKS
    }
    revisions = [args.base] + ([args.head] if args.head else [])
    labels = [describe(repo, revision) for revision in revisions]
    if not args.head:
        dirty = git(repo, "status", "--porcelain")
        changes = " + uncommitted changes" if dirty else ""
        labels.append(f"the working tree {repo} ({describe(repo, 'HEAD').split()[0]}{changes})")

    previous = signal.signal(signal.SIGTERM, _raise_on_termination)
    started = time.perf_counter()
    try:
        with temporary_worktrees(repo, revisions) as trees, tempfile.TemporaryDirectory() as work:
            versions = [
                Version(role, label, tree)
                for role, label, tree in zip(("BASE", "HEAD"), labels, [*trees, repo], strict=False)
            ]
            for version in versions:
                check_import_location(version, args.threads)
            load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
            print(f"BASE = {versions[0].label}\nHEAD = {versions[1].label}")
            print(
                f"{args.rounds} round(s), {'full' if args.full else 'quick'} configuration, "
                f"OMP_NUM_THREADS={args.threads or os.environ.get('OMP_NUM_THREADS', 'unset')}, "
                f"{os.cpu_count()} CPUs, load average at the start {load}"
            )
            if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
                print(
                    "The machine is busy: every ratio moves with its load (see the † rows); "
                    "more --rounds and --threads 1 steady them."
                )
            measurements = measure(
                versions, args.benchmarks, arguments, scripts, args.rounds, args.threads, Path(work)
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(report(measurements, args.benchmarks, arguments))
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\n{time.perf_counter() - started:.0f} s in all; load average at the end {load}.")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                dict(
                    base=versions[0].label,
                    head=versions[1].label,
                    arguments={b: arguments[b] for b in args.benchmarks},
                    seconds=measurements.seconds,
                    failures=measurements.failures,
                ),
                indent=2,
            )
        )
    return 1 if measurements.failures else 0


if __name__ == "__main__":
    sys.exit(main())
