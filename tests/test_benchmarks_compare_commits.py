"""benchmarks/compare_commits.py: medians, ratios and tables on made-up times; its temporary worktrees are
removed also after an error; end to end on a throw-away git repository whose "library" says how long its
cases take and whose "benchmarks" report that, so the tables can be checked exactly (no wall-clock
time is measured or asserted)."""

import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_commits.py"
_spec = importlib.util.spec_from_file_location("benchmark_compare_commits", SCRIPT)
cc = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = cc
_spec.loader.exec_module(cc)


@pytest.fixture(autouse=True)
def temporary_folder(tmp_path, monkeypatch):
    """compare_commits' temporary folders under pytest's, should one outlive a failing test."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()


def measurements(base: dict, head: dict, controls=()) -> "cc.Measurements":
    m = cc.Measurements()
    for role, cases in (("BASE", base), ("HEAD", head)):
        for case, rounds in cases.items():
            m.seconds.setdefault("losses", {}).setdefault(role, {})[case] = list(rounds)
            m.ours.setdefault("losses", {})[case] = case not in controls
    return m


def test_median_over_rounds_and_ratio_of_the_medians():
    m = measurements(
        base={"a": [0.001, 0.003, 0.002], "b": [0.010, 0.010, 0.010], "gone": [0.5]},
        head={"a": [0.002, 0.009, 0.004], "b": [0.009, 0.010, 0.011], "new": [0.25]},
    )
    rows = {row.case: row for row in cc.compare(m, "losses")}
    assert list(rows) == ["a", "b", "gone", "new"]  # the benchmark's order, BASE's cases first
    a = rows["a"]
    assert (a.base, a.head, a.ratio) == (0.002, 0.004, 2.0)
    assert a.round_ratios == pytest.approx((2.0, 3.0, 2.0))  # HEAD / BASE within each round
    assert rows["b"].ratio == pytest.approx(1.0)
    assert rows["gone"].head is None and rows["gone"].ratio is None
    assert rows["new"].base is None and rows["new"].ratio is None
    assert cc.compare(m, "metrics") == []  # not run


def test_markdown_table():
    m = measurements(
        base={"ours": [0.002, 0.002], "PML": [0.1234, 0.1234], "gone": [1.5, 1.5]},
        head={"ours": [0.003, 0.002], "PML": [0.1234, 0.1234], "new": [0.05]},
        controls={"PML"},
    )
    lines = cc.markdown_table(cc.compare(m, "losses")).splitlines()
    assert lines[0] == "| case | BASE (ms) | HEAD (ms) | HEAD / BASE | per round |"
    assert lines[1] == "|---|---:|---:|---:|---|"
    assert lines[2] == "| ours | 2.00 | 2.50 | 1.250 | 1.00–1.50 |"
    assert lines[3] == "| PML † | 123 | 123 | 1.000 | 1.00–1.00 |"
    assert lines[4] == "| gone | 1,500 | – | missing at HEAD |  |"
    assert lines[5] == "| new | – | 50.0 | missing at BASE |  |"


def test_summary_line_takes_the_worst_of_our_cases_and_the_controls_range():
    m = measurements(
        base={"fast": [1.0], "slow": [1.0], "PML": [1.0], "sklearn": [1.0]},
        head={"fast": [0.8], "slow": [1.07], "PML": [1.2], "sklearn": [0.9]},
        controls={"PML", "sklearn"},
    )
    line = cc.summary_line({"losses": cc.compare(m, "losses")})
    assert line.startswith("Worst ratio HEAD / BASE: 1.070 (losses: slow).")  # not the control's 1.2
    assert "(†): 0.900–1.200" in line
    assert cc.summary_line({}).startswith("Worst ratio HEAD / BASE: none")


def git(repo: Path, *args: str) -> str:
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def commit_library(repo: Path, seconds: float, extra: str = "") -> None:
    package = repo / "silhouette_lightning"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(f"SECONDS = {seconds}\n{extra}")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{seconds} s")


@pytest.fixture
def repo(tmp_path) -> Path:
    """Three commits of a fake library: SECONDS = 0.002, 0.003 (with NEW_NAME), 0.004 (HEAD)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    commit_library(repo, 0.002)
    commit_library(repo, 0.003, "NEW_NAME = 1\n")
    commit_library(repo, 0.004, "NEW_NAME = 1\n")
    return repo


def worktrees(repo: Path) -> list[str]:
    return [
        line
        for line in git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree")
    ]


def test_temporary_worktrees_are_detached_checkouts_removed_at_the_end(repo):
    with cc.temporary_worktrees(repo, ["HEAD~2", "HEAD~1"]) as (first, second):
        assert "SECONDS = 0.002" in (first / "silhouette_lightning" / "__init__.py").read_text()
        assert "SECONDS = 0.003" in (second / "silhouette_lightning" / "__init__.py").read_text()
        assert git(first, "rev-parse", "--abbrev-ref", "HEAD") == "HEAD"  # detached
        assert len(worktrees(repo)) == 3
    assert not first.exists() and not second.exists() and not first.parent.exists()
    assert worktrees(repo) == [f"worktree {repo}"]


def test_temporary_worktrees_are_removed_after_an_error(repo):
    with pytest.raises(KeyboardInterrupt), cc.temporary_worktrees(repo, ["HEAD~1"]) as (tree,):
        (tree / "untracked.txt").write_text("a file git does not know")
        raise KeyboardInterrupt
    assert not tree.parent.exists() and worktrees(repo) == [f"worktree {repo}"]
    with (
        pytest.raises(subprocess.CalledProcessError),
        cc.temporary_worktrees(repo, ["HEAD", "no-such-commit"]),
    ):
        pass  # the second one fails: the first is removed all the same
    assert worktrees(repo) == [f"worktree {repo}"]


FAKE_BENCHMARK = """
import argparse, json, os, silhouette_lightning as library
parser = argparse.ArgumentParser()
parser.add_argument("--json")
args, rest = parser.parse_known_args()
with open(os.path.join(os.path.dirname(__file__), "calls.log"), "a") as log:
    log.write(f"{os.path.basename(__file__)} {library.__file__} {' '.join(rest)}\\n")
if os.path.basename(__file__) == "metrics.py":
    library.NEW_NAME  # not in the oldest version: an AttributeError there
records = [dict(case="ours", seconds=library.SECONDS, ours=True),
           dict(case="control", seconds=0.010, ours=False)]
with open(args.json, "w") as f:
    json.dump(records, f)
"""


@pytest.fixture
def scripts(tmp_path) -> Path:
    folder = tmp_path / "scripts"
    folder.mkdir()
    for name in cc.BENCHMARKS:
        (folder / f"{name}.py").write_text(FAKE_BENCHMARK)
    return folder


def calls(scripts: Path) -> list[list[str]]:
    return [line.split() for line in (scripts / "calls.log").read_text().splitlines()]


def test_end_to_end_two_commits(repo, scripts, tmp_path, capsys):
    out = tmp_path / "comparison.json"
    argv = ["HEAD~2", "HEAD~1", "--benchmarks", "losses", "metrics", "--rounds", "2",
            "--losses-args=--sizes 64 --budget 0", "--json", str(out)]  # fmt: skip
    status = cc.main(argv, repo=repo, scripts=scripts)
    printed = capsys.readouterr()
    assert status == 1  # metrics failed at BASE
    assert "| ours | 2.00 | 3.00 | 1.500 | 1.50–1.50 |" in printed.out
    assert "| control † | 10.0 | 10.0 | 1.000 | 1.00–1.00 |" in printed.out
    assert "Skipped at BASE: exit status 1: " in printed.out and "NEW_NAME" in printed.out
    assert "| ours | – | 3.00 | missing at BASE |  |" in printed.out
    assert "Worst ratio HEAD / BASE: 1.500 (losses: ours)." in printed.out
    assert "--sizes 256 1024 --budget 0.5 --no-memory --sizes 64 --budget 0" in printed.out  # appended
    assert "FAILED" in printed.err and "round 2/2: losses at HEAD" in printed.err

    log = calls(scripts)
    trees = [Path(call[1]).parents[1] for call in log]
    losses = [tree for call, tree in zip(log, trees, strict=True) if call[0] == "losses.py"]
    base, head = losses[0], losses[1]
    assert base != head and losses == [base, head, head, base]  # alternating, order flipped in round 2
    assert [tree for call, tree in zip(log, trees, strict=True) if call[0] == "metrics.py"] == [
        base,
        head,
        head,
    ]
    assert log[0][2:] == ["--sizes", "256", "1024", "--budget", "0.5", "--no-memory", "--sizes", "64",
                          "--budget", "0"]  # fmt: skip
    assert not base.exists() and not head.exists() and worktrees(repo) == [f"worktree {repo}"]

    saved = json.loads(out.read_text())
    assert saved["seconds"]["losses"]["BASE"]["ours"] == [0.002, 0.002]
    assert saved["seconds"]["losses"]["HEAD"]["ours"] == [0.003, 0.003]
    assert set(saved["failures"]["metrics"]) == {"BASE"}


def test_end_to_end_against_the_working_tree(repo, scripts, capsys):
    (repo / "silhouette_lightning" / "__init__.py").write_text(
        "SECONDS = 0.005\nNEW_NAME = 1\n"
    )  # uncommitted
    assert (
        cc.main(["HEAD", "--benchmarks", "train_step", "--rounds", "1", "--full"], repo=repo, scripts=scripts)
        == 0
    )
    printed = capsys.readouterr().out
    assert "HEAD = the working tree" in printed and "uncommitted changes" in printed
    assert "| ours | 4.00 | 5.00 | 1.250 |  |" in printed
    head = [Path(call[1]).parents[1] for call in calls(scripts)][1]
    assert head == repo  # the working tree itself, not a checkout
    assert worktrees(repo) == [f"worktree {repo}"]


def test_an_unknown_revision_is_a_clear_error(repo, scripts):
    with pytest.raises(SystemExit, match="'no-such-commit' is not a commit of"):
        cc.main(["no-such-commit"], repo=repo, scripts=scripts)
    assert worktrees(repo) == [f"worktree {repo}"]
