"""The command line of sharded runs: `run --shard`, `run --gpus`, `merge`, and the option
combinations refused with exit 2."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scfa_bench.cli import app
from scfa_bench.results.merge import non_timing_cells
from scfa_bench.results.meta import read_meta
from scfa_bench.results.reader import read_results
from scfa_bench.results.row import row_cells

runner = CliRunner()

TINY = """\
name: tiny
seed: 0
shape: {batch: 1, heads: 1, head_dim: 16, dtype: fp32}
sweep:
  seq_len: [16, 32]
  n_buckets: [2, 4]
implementations: [naive_hash, sdpa_math]
baseline: sdpa_math
modes: [fwd]
timing: {warmup_ms: 0, rep_ms: 1}
device: cpu
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY, encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def single(tiny: Path, out: Path) -> list:
    code, output = run("run", tiny, "--out", out, "--no-progress")
    assert code == 0, output
    return read_results(next(out.glob("tiny-*.csv"))).rows


def test_shards_by_hand_then_merge(tiny: Path, tmp_path: Path) -> None:
    for index in (0, 1):
        code, output = run("run", tiny, "--shard", f"{index}/2", "--out", tmp_path / "parts")
        assert code == 0, output
    parts = sorted((tmp_path / "parts").glob("*.csv"))
    assert [p.name.split("-shard-")[1] for p in parts] == ["0-of-2.csv", "1-of-2.csv"]
    assert read_meta(parts[1].with_name(parts[1].stem + ".meta.json"))["shard"]["index"] == 1

    out = tmp_path / "merged.csv"
    code, output = run("merge", tmp_path / "parts", "--out", out, "--suite", tiny)
    assert code == 0, output
    assert "merged 6 rows from 2 parts (cpu)" in output
    reference = single(tiny, tmp_path / "one")
    merged = read_results(out).rows
    assert [non_timing_cells(r) for r in merged] == [non_timing_cells(r) for r in reference]
    assert all(r.speedup is not None for r in merged)


def test_merge_reports_missing_rows_and_exits_1(tiny: Path, tmp_path: Path) -> None:
    code, output = run("run", tiny, "--shard", "0/2", "--out", tmp_path / "parts")
    assert code == 0, output
    code, output = run("merge", tmp_path / "parts", "--out", tmp_path / "m.csv", "--suite", tiny)
    assert code == 1 and "missing:" in output
    assert (tmp_path / "m.csv").exists()


@pytest.mark.slow
def test_gpus_run_merges_like_one_process(tiny: Path, tmp_path: Path) -> None:
    code, output = run("run", tiny, "--gpus", "0,1", "--out", tmp_path / "multi", "--no-progress")
    assert code == 0, output
    assert "shard 0 done on gpu 0" in output and "shard 1 done on gpu 1" in output
    merged = read_results(next((tmp_path / "multi").glob("tiny-*.csv"))).rows
    reference = single(tiny, tmp_path / "one")
    assert [non_timing_cells(r) for r in merged] == [non_timing_cells(r) for r in reference]
    parts_dir = next((tmp_path / "multi").glob("tiny-*.parts"))
    code, output = run("run", tiny, "--resume", parts_dir, "--no-progress")
    assert code == 0, output  # the run's own record names its cards; nothing left: merged again
    assert "done on gpu" not in output


def test_dry_run_of_shards(tiny: Path, tmp_path: Path) -> None:
    code, output = run("run", tiny, "--gpus", "0,1", "--dry-run")
    assert code == 0 and "2 shards" in output
    code, output = run("run", tiny, "--shard", "1/2", "--dry-run")
    assert code == 0 and "3 of 6 tasks in shard 1/2" in output  # the shard's own count
    assert "3 result rows" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "2/2"], "--shard: expected I/N"),
        (["--shard", "0/2", "--gpus", "0,1"], "does not go with"),
        (["--partition", "gpu"], "only with --executor slurm"),
        (["--executor", "slurm", "--gpus", "0"], "--gpus is for local runs"),
        (["--executor", "pbs"], "--executor: expected one of"),
        (["--gpus", "0,0"], "--gpus: expected all"),
        (["--gpus", "0,1", "--resume", "x.csv"], "give the run's .parts folder"),
        (["--max-restarts", "-1", "--gpus", "0"], "--max-restarts"),
        (["--cache-dir", "c"], "--cache-dir: for --gpus"),
        (["--profile-stages", "--gpus", "0"], "--profile-stages runs here only"),
        (["--executor", "slurm"], "needs --shards N"),
        (["--max-cpu-minutes", "0"], "--max-cpu-minutes must be > 0"),
    ],
)
def test_bad_option_combinations_exit_2(
    tiny: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    code, output = run("run", tiny, "--out", tmp_path, *args)
    assert code == 2, output
    assert message in " ".join(output.split())


def test_merge_bad_input_exits_2(tiny: Path, tmp_path: Path) -> None:
    code, output = run("merge", tmp_path / "nothing.csv", "--out", tmp_path / "m.csv")
    assert code == 2 and "no such file or folder" in output
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output = run("merge", empty, "--out", tmp_path / "m.csv")
    assert code == 2 and "without part files" in output


def test_merge_refuses_mixed_cards_unless_allowed(tiny: Path, tmp_path: Path) -> None:
    reference = single(tiny, tmp_path / "one")
    first = next((tmp_path / "one").glob("tiny-*.csv"))
    with first.open(newline="") as f:  # the same rows, measured on another card
        rows = [{**row, "device": "Other GPU"} for row in csv.DictReader(f)]
    other = tmp_path / "other.csv"
    with other.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    code, output = run("merge", first, other, "--out", tmp_path / "m.csv")
    assert code == 2 and "different cards" in " ".join(output.split())
    code, output = run("merge", first, other, "--out", tmp_path / "m.csv", "--allow-mixed-devices")
    assert code == 0, output
    merged = read_results(tmp_path / "m.csv").rows
    assert len(merged) == 2 * len(reference)
    assert {r.device for r in merged} == {"cpu", "Other GPU"}
    assert all(row_cells(r)["speedup"] for r in merged)  # each card has its own baseline


def _change_seed(suite: Path) -> None:
    suite.write_text(suite.read_text().replace("seed: 0", "seed: 1"), encoding="utf-8")


def test_force_resumes_one_shard_of_a_changed_suite(tiny: Path, tmp_path: Path) -> None:
    """`--shard` resume of a changed suite: refused naming --force; with --force it goes on."""
    code, output = run("run", tiny, "--shard", "0/2", "--out", tmp_path / "p", "--no-progress")
    assert code == 0, output
    part = next((tmp_path / "p").glob("tiny-*-shard-0-of-2.csv"))
    _change_seed(tiny)
    args = ("run", tiny, "--shard", "0/2", "--resume", part, "--no-progress")
    code, output = run(*args)
    assert code == 2 and "--force" in output and "seed: 0 -> 1" in " ".join(output.split())
    code, output = run(*args, "--force")
    assert code == 0, output
    assert "resuming anyway (--force)" in " ".join(output.split())


@pytest.mark.slow
def test_force_resumes_a_gpus_run_of_a_changed_suite(tiny: Path, tmp_path: Path) -> None:
    """`--gpus` resume of a changed suite: the supervisor refuses without --force; with it,
    every worker resumes its part (each part's meta names the old suite) and the run merges."""
    code, output = run("run", tiny, "--gpus", "0,1", "--out", tmp_path, "--no-progress")
    assert code == 0, output
    parts_dir = next(tmp_path.glob("tiny-*.parts"))
    for part in parts_dir.glob("shard-*.csv"):  # leave work for the workers
        part.write_text(part.read_text().splitlines(keepends=True)[0], encoding="utf-8")
    _change_seed(tiny)
    code, output = run("run", tiny, "--resume", parts_dir, "--no-progress")
    assert code == 2 and "--force" in output
    code, output = run("run", tiny, "--resume", parts_dir, "--no-progress", "--force")
    assert code == 0, output
    assert "shard 0 done" in output and "shard 1 done" in output
    assert len(read_results(next(tmp_path.glob("tiny-*.csv"))).rows) == 6


@pytest.mark.slow
def test_workers_import_plugins_when_allowed(tiny: Path, tmp_path: Path) -> None:
    """The supervisor passes --allow-plugins on: each worker registers the suite's plugin
    from the file it reads again."""
    from scfa_bench.impls import registry

    (tmp_path / "mine.py").write_text(
        "from scfa_kernels import reference\n\n"
        "def mine(q, k, v, q_hash, k_hash):\n"
        "    return reference.hash_sparse_attention(q, k, v, q_hash, k_hash).to(q.dtype)\n\n"
        "mine.devices = ('cpu',)\n"
    )
    tiny.write_text(TINY.replace("[naive_hash, sdpa_math]", "[sdpa_math, 'mine.py:mine']"))
    before = set(registry.all_specs())
    try:
        args = ("run", tiny, "--gpus", "0,1", "--out", tmp_path / "r", "--no-progress")
        code, output = run(*args)
        assert code == 2 and "--allow-plugins" in output
        code, output = run(*args, "--allow-plugins")
    finally:
        for name in set(registry.all_specs()) - before:
            registry.unregister(name)
    assert code == 0, output
    rows = read_results(next((tmp_path / "r").glob("tiny-*.csv"))).rows
    assert {r.impl for r in rows if r.status == "ok"} == {"sdpa_math", "mine.py:mine"}
