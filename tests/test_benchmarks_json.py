"""The ``--json`` output of benchmarks/losses.py, metrics.py and train_step.py on tiny configurations: one
object per printed row with the documented keys, which benchmarks/compare_commits.py reads. No time is
asserted, only that each is a positive number."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import sklearn.metrics

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the scripts import benchmarks/resident_memory.py


def load_script(name: str):
    """benchmarks/<name>.py as the module ``benchmark_<name>`` (``losses`` would clash with tests/losses)."""
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def losses():
    return load_script("losses")


@pytest.fixture(scope="module")
def metrics():
    return load_script("metrics")


@pytest.fixture(scope="module")
def train_step():
    return load_script("train_step")


def read(path: Path) -> list[dict]:
    records = json.loads(path.read_text())
    assert records and all(record["seconds"] > 0 for record in records)
    assert len({record["case"] for record in records}) == len(records)  # case names are unique keys
    return records


def test_losses_json(losses, tmp_path, capsys):
    out = tmp_path / "losses.json"
    losses.main(
        ["--sizes", "16", "24", "--device", "cpu", "--no-memory", "--budget", "0", "--json", str(out)]
    )
    records = read(out)
    keys = {"case", "device", "n", "loss", "samples", "seconds", "peak_memory_mb", "ours"}
    assert all(set(record) == keys for record in records)
    assert [(r["n"], r["loss"]) for r in records] == [(n, c.name) for n in (16, 24) for c in losses.CASES]
    first = records[0]
    assert first["case"] == "cpu N=16 Soft Silhouette (pairwise)" and first["device"] == "cpu"
    assert first["peak_memory_mb"] is None  # --no-memory
    ours = {r["loss"] for r in records if r["ours"]}
    assert ours == {"Soft Silhouette (pairwise)", "Soft Silhouette (centroid)", "SupCon (ours, 1 view)",
                    "SupCon (ours, 2 views)"}  # fmt: skip
    two_views = next(r for r in records if r["loss"] == "SupCon (ours, 2 views)")
    assert two_views["samples"] == 2 * two_views["n"]
    assert "| 16 | Soft Silhouette (pairwise) | 16 |" in capsys.readouterr().out  # the table is unchanged


def test_losses_without_json_writes_nothing(losses, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    losses.main(["--sizes", "16", "--device", "cpu", "--no-memory", "--budget", "0"])
    assert list(tmp_path.iterdir()) == []


def test_metrics_json(metrics, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(metrics, "PAUSE_S", 0.0)
    out = tmp_path / "metrics.json"
    common = [
        "--sizes",
        "150",
        "--dim",
        "8",
        "--classes",
        "4",
        "--repeats",
        "1",
        "--budget",
        "0",
        "--no-memory",
    ]
    metrics.main([*common, "--json", str(out)])
    records = read(out)
    keys = {"case", "n", "implementation", "chunk", "seconds", "peak_memory_mb", "score", "ours"}
    assert all(set(record) == keys for record in records)
    assert [r["implementation"] for r in records] == [case.name for case in metrics.CASES]
    assert [r["ours"] for r in records] == [case.ours for case in metrics.CASES]
    assert all(r["chunk"] is None and r["peak_memory_mb"] is None for r in records)  # the library's tiles
    assert records[2]["case"] == "N=150 SilhouetteScore (float64)"
    x, y = metrics.make_inputs(150, 8, 4)
    assert records[2]["score"] == pytest.approx(sklearn.metrics.silhouette_score(x, y), abs=1e-12)
    assert "| 150 | SilhouetteScore (float64) | auto |" in capsys.readouterr().out

    metrics.main([*common, "--chunk-sizes", "64", "100", "--json", str(out)])
    cases = [r["case"] for r in read(out)]
    assert "N=150 SilhouetteScore (float64) chunk=64" in cases
    assert "N=150 SilhouetteScore (float64) chunk=100" in cases
    assert "N=150 sklearn silhouette_score (float64)" in cases  # scikit-learn has no tiles


@pytest.mark.filterwarnings("ignore:No loss term reads the embeddings")  # the CE row, as in training
def test_train_step_json(train_step, tmp_path):
    out = tmp_path / "train_step.json"
    train_step.main(
        ["--backbone", "smallcnn2", "--batch-size", "8", "--image-size", "8", "--classes", "3",
         "--memory-size", "16", "--rounds", "1", "--steps", "1", "--json", str(out)]
    )  # fmt: skip
    records = read(out)
    assert all(set(r) == {"case", "objective", "seconds", "ratio_to_ce", "ours"} for r in records)
    assert [r["case"] for r in records] == list(train_step.METHODS)
    assert records[0]["ratio_to_ce"] == 1.0 and all(r["ours"] for r in records)


def test_train_step_fills_the_memory_through_the_public_class(train_step):
    from silhouette_lightning.losses import CrossBatchMemory

    args = train_step.argparse.Namespace(backbone="smallcnn2", classes=3, memory_size=16, device="cpu")
    module, _, views = train_step._module(train_step.MEMORY_METHOD, args)
    memories = [m for m in module.modules() if isinstance(m, CrossBatchMemory)]
    assert views == 1 and len(memories) == 1 and len(memories[0]) == 16  # full before the first timed step
