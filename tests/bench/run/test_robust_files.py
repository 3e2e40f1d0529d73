"""Results files that survive anything: write failures exit 2 with one line and leave
whole rows only; resume drops a partly written last row (both ways it used to corrupt a file);
a changed suite is refused; a SIGKILLed run's meta reads `incomplete`."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scfa_bench.cli import app
from scfa_bench.errors import OutputError
from scfa_bench.measure.envinfo import kernels_hash
from scfa_bench.results import writer as writer_module
from scfa_bench.results.meta import meta_path_for
from scfa_bench.results.reader import read_results
from scfa_bench.results.row import ResultRow
from scfa_bench.results.writer import ResultWriter

runner = CliRunner()
SUITE = """\
name: robust
shape: {batch: 1, heads: 1, head_dim: 16, dtype: fp32}
sweep: {seq_len: [16, 32], n_buckets: [2]}
implementations: [sdpa_math, naive_hash]
modes: [fwd]
timing: {warmup_ms: 0, rep_ms: 1}
device: cpu
"""
ROWS = 4  # 2 seq_len x (dense once + hash at one bucket count), one mode


def suite_file(tmp_path: Path, text: str = SUITE) -> Path:
    path = tmp_path / "robust.yaml"
    path.write_text(text)
    return path


def cli(*args: str | Path):
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    if result.exc_info is not None:
        assert result.exc_info[0] is SystemExit, result.exc_info
    return result


def run_new(tmp_path: Path, suite: Path) -> Path:
    out = tmp_path / "out"
    result = cli("run", suite, "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    (csv_path,) = out.glob("robust-*.csv")
    meta = meta_of(csv_path)
    assert meta["state"] == "complete" and meta["pid"] > 0
    assert meta["kernels_hash"] == kernels_hash() != "n/a"
    return csv_path


def meta_of(csv_path: Path) -> dict:
    return json.loads(meta_path_for(csv_path).read_text())


def assert_whole(csv_path: Path, rows: int) -> list[ResultRow]:
    """Every line whole, every key once, every status set."""
    data = csv_path.read_bytes()
    assert data.endswith(b"\r\n")
    got = list(read_results(csv_path).rows)
    assert len(got) == rows == len({r.key for r in got})
    assert all(r.status and r.device == "cpu" for r in got)
    return got


@pytest.mark.parametrize("fault", ["disk_full_mid_line", "write_raises"])
def test_full_disk_exits_2_keeps_whole_rows_and_resume_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    suite = suite_file(tmp_path)
    calls = {"n": 0}
    real_write_all = writer_module._write_all

    def half_then_enospc(fd: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 4:  # header, two rows, then the disk fills half-way through a row
            os.write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_all(fd, data)

    def write_raises(self: ResultWriter, row: ResultRow) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if fault == "disk_full_mid_line":
        monkeypatch.setattr(writer_module, "_write_all", half_then_enospc)
    else:
        monkeypatch.setattr(ResultWriter, "write", write_raises)
    out = tmp_path / "out"
    result = cli("run", suite, "--out", out, "--no-progress")
    assert result.exit_code == 2
    (csv_path,) = out.glob("robust-*.csv")
    assert f"{csv_path}: cannot write (No space left on device)" in " ".join(result.output.split())
    written = 2 if fault == "disk_full_mid_line" else 0
    assert csv_path.read_bytes().endswith(b"\n")  # the half row was cut off again
    assert len(read_results(csv_path).rows) == written
    meta = meta_of(csv_path)
    assert meta["state"] == "failed" and "No space left" in meta["error"]

    monkeypatch.undo()
    result = cli("run", suite, "--resume", csv_path, "--no-progress")
    assert result.exit_code == 0, result.output
    assert_whole(csv_path, ROWS)
    assert meta_of(csv_path)["state"] == "complete"


def test_unwritable_results_file_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No permission on the CSV (simulated: the tests may run as root, who may write anyway)."""

    def denied(path: Path) -> int:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(writer_module, "_open_append", denied)
    result = cli("run", suite_file(tmp_path), "--out", tmp_path / "out", "--no-progress")
    assert result.exit_code == 2
    assert "cannot write (Permission denied)" in result.output
    (meta_file,) = (tmp_path / "out").glob("robust-*.meta.json")
    assert json.loads(meta_file.read_text())["state"] == "failed"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_folder_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        result = cli("run", suite_file(tmp_path), "--out", out, "--no-progress")
    finally:
        out.chmod(0o700)
    assert result.exit_code == 2 and str(out) in result.output


def test_output_error_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    writer = ResultWriter(tmp_path / "x.csv")
    size = (tmp_path / "x.csv").stat().st_size
    monkeypatch.setattr(writer_module, "_write_all", full)
    with pytest.raises(OutputError, match=r"x\.csv: cannot write \(No space left on device\)"):
        writer.write(ResultRow("s", "i", "fwd", 1, 1, 16, 16, None, None, "fp32"))
    writer.close()
    assert (tmp_path / "x.csv").stat().st_size == size


@pytest.mark.parametrize("variant", ["glued", "counted_as_done"])
def test_resume_drops_a_partly_written_last_row(tmp_path: Path, variant: str) -> None:
    """Resuming after a cut row either glued new rows onto the fragment
    (`scfa_hashmine`) or, when the cut fell inside the last cell, counted the fragment as
    done and left a broken row behind. Now the fragment is dropped and measured again."""
    suite = suite_file(tmp_path)
    csv_path = run_new(tmp_path, suite)
    last_key = read_results(csv_path).rows[-1].key
    lines = csv_path.read_bytes().splitlines(keepends=True)
    last = lines[-1].rstrip(b"\r\n")
    # Cut inside the last cell (blank here: the newline is all that is missing): every cell there.
    fragment = last[:30] if variant == "glued" else last
    csv_path.write_bytes(b"".join(lines[:-1]) + fragment)
    if variant == "counted_as_done":  # the old reader took this for a finished row
        assert read_results(csv_path).rows[-1].key == last_key

    result = cli("run", suite, "--resume", csv_path, "--no-progress")
    assert result.exit_code == 0, result.output
    message = " ".join(result.output.split())
    assert f"{csv_path}: dropped a partly written last row (line {ROWS + 1}" in message
    assert "it will be measured again" in message
    rows = assert_whole(csv_path, ROWS)
    assert rows[-1].key == read_results(csv_path).rows[-1].key  # re-measured, complete
    result = cli("run", suite, "--resume", csv_path, "--no-progress")  # nothing left to do
    assert result.exit_code == 0 and "dropped" not in result.output
    assert_whole(csv_path, ROWS)


def test_dry_run_resume_leaves_the_fragment(tmp_path: Path) -> None:
    suite = suite_file(tmp_path)
    csv_path = run_new(tmp_path, suite)
    data = csv_path.read_bytes()[:-5]
    csv_path.write_bytes(data)
    result = cli("run", suite, "--resume", csv_path, "--dry-run")
    assert result.exit_code == 0 and "1 result rows to run" in result.output
    assert csv_path.read_bytes() == data


def test_resume_refuses_a_changed_suite_unless_forced(tmp_path: Path) -> None:
    suite = suite_file(tmp_path)
    csv_path = run_new(tmp_path, suite)
    csv_path.write_bytes(b"".join(csv_path.read_bytes().splitlines(keepends=True)[:-1]))
    before = csv_path.read_bytes()

    suite.write_text(SUITE.replace("head_dim: 16", "head_dim: 32"))
    result = cli("run", suite, "--resume", csv_path, "--no-progress")
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert f"{suite}: changed since {csv_path} was started" in message
    assert "shape: {'batch': 1, 'heads': 1, 'head_dim': 16" in message
    assert "'head_dim': 32" in message and "--force" in message
    assert csv_path.read_bytes() == before  # nothing touched

    result = cli("run", suite, "--resume", csv_path, "--no-progress", "--force")
    assert result.exit_code == 0, result.output
    assert "resuming anyway (--force)" in result.output
    meta = meta_of(csv_path)
    assert meta["suite"]["shape"]["head_dim"] == 32 and meta["resumed"][-1]["suite_sha256"]


def test_resume_accepts_a_comment_only_change(tmp_path: Path) -> None:
    suite = suite_file(tmp_path)
    csv_path = run_new(tmp_path, suite)
    suite.write_text("# a comment\n" + SUITE)
    result = cli("run", suite, "--resume", csv_path, "--no-progress")
    assert result.exit_code == 0 and "comments or layout only" in result.output


_SLOW_RUN = """
import sys, time
from pathlib import Path
from scfa_bench.impls import registry
from scfa_bench.run.loop import RunOptions, run_suite
from scfa_bench.suite.parse import load_suite

class Slow:
    def available(self, device):
        return True, ""
    def prepare(self, inputs):
        time.sleep(60)

registry.register(name="slow_fake", pattern="dense", devices=("cpu",))(Slow)
run_suite(load_suite(sys.argv[1]), RunOptions(out_dir=Path(sys.argv[2])))
"""


def test_sigkilled_run_reads_incomplete(tmp_path: Path) -> None:
    suite = suite_file(tmp_path, SUITE.replace("[sdpa_math, naive_hash]", "[sdpa_math, slow_fake]"))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, str(suite), str(out)])
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("robust-*.meta.json")) or not list(out.glob("robust-*.csv")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        (csv_path,) = out.glob("robust-*.csv")
        assert read_results(csv_path).state == "running"  # the process is alive
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert meta_of(csv_path)["state"] == "running"  # nothing could write its end
    assert read_results(csv_path).state == "incomplete"
    result = cli("report", csv_path, "--out", tmp_path / "report")
    assert result.exit_code == 0, result.output
    report = (tmp_path / "report" / "README.md").read_text()
    assert "incomplete" in report


def test_resume_refuses_a_whole_row_with_an_empty_status(tmp_path: Path) -> None:
    """A resumed file can never keep a row without a status: it is bad input, named by line."""
    suite = suite_file(tmp_path)
    csv_path = run_new(tmp_path, suite)
    lines = csv_path.read_text().splitlines(keepends=True)
    cells = lines[2].split(",")
    cells[lines[0].rstrip("\n").split(",").index("status")] = ""
    csv_path.write_text("".join([*lines[:2], ",".join(cells), *lines[3:]]))
    result = cli("run", suite, "--resume", csv_path, "--no-progress")
    assert result.exit_code == 2
    assert "line 3, column 'status': '' is not one of" in " ".join(result.output.split())


def test_report_into_an_unwritable_folder_exits_2(tmp_path: Path) -> None:
    suite = suite_file(tmp_path)
    csv_path = run_new(tmp_path, suite)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder\n")
    for command in ("report", "plot"):
        result = cli(command, csv_path, "--out", blocker / "report")
        assert result.exit_code == 2, result.output
        assert f"{blocker / 'report'}: cannot write" in " ".join(result.output.split())
