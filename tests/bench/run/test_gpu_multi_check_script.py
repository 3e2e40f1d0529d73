"""tools/gpu_multi_check.sh without GPUs: stand-in `nvidia-smi` and `scfa-bench` on PATH, the
two runs in separate calls (PHASES), then the comparison of their rows and wall times."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "tools" / "gpu_multi_check.sh"

FAKE_NVIDIA_SMI = """#!/usr/bin/env bash
case "$*" in
  -L) printf 'GPU 0: Stand-in (UUID: a)\\nGPU 1: Stand-in (UUID: b)\\n' ;;
  *) printf '0\\n1\\n' ;;
esac
"""

# Writes one results CSV into --out; the row's status comes from $FAKE_STATUS. It takes a fixed
# 0.3 s, so the one-GPU and "all GPUs" runs take about as long (a few-millisecond stand-in made
# their ratio noise, sometimes above the 1.8x target).
FAKE_SCFA_BENCH = """#!/usr/bin/env bash
sleep 0.3
ARGS="$*"
while [ $# -gt 0 ]; do
  if [ "$1" = "--out" ]; then out=$2; fi
  shift
done
mkdir -p "$out"
echo "${CUDA_VISIBLE_DEVICES-unset}" > "$out/cuda_visible_devices.txt"
echo "$ARGS" > "$out/args.txt"
{
  echo "impl,mode,batch,heads,head_dim,seq_len,n_buckets,drop_rate,dtype,status,ms_median"
  echo "scfa_hash,fwd,4,48,64,1024,8,,bf16,${FAKE_STATUS:-ok},0.5"
} > "$out/hash-20260101-000000.csv"
"""


@pytest.fixture
def fake_path(tmp_path: Path) -> dict[str, str]:
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("nvidia-smi", FAKE_NVIDIA_SMI), ("scfa-bench", FAKE_SCFA_BENCH)):
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def _run(env: dict[str, str], out: Path, phases: str, **extra: str):
    return subprocess.run(
        ["bash", str(SCRIPT), "suites/hash.yaml"],
        env={**env, "OUT": str(out), "PHASES": phases, **extra},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_runs_in_separate_calls_then_compares(fake_path: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _run(fake_path, out, "multi")
    assert first.returncode == 0, first.stdout + first.stderr
    assert (out / "multi.seconds").read_text().strip() and not (out / "one.seconds").exists()

    early = _run(fake_path, out, "compare")
    assert early.returncode == 1 and "no wall time of the one run" in early.stdout

    second = _run(fake_path, out, "one compare")
    # The stand-ins take about as long on "two GPUs" as on one: same rows, below 1.8x.
    assert second.returncode == 3, second.stdout + second.stderr
    assert "rows: same 1 keys and statuses" in second.stdout
    # The one-GPU run sees the first GPU alone; the --gpus all run leaves the choice to workers.
    assert (out / "one" / "cuda_visible_devices.txt").read_text().strip() == "0"
    assert (out / "multi" / "cuda_visible_devices.txt").read_text().strip() == "unset"
    assert "BELOW TARGET" in second.stdout


def test_different_statuses_fail_the_comparison(fake_path: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run(fake_path, out, "multi").returncode == 0
    result = _run(fake_path, out, "one compare", FAKE_STATUS="oom")
    assert result.returncode == 1 and "statuses differ" in result.stdout


def test_runs_in_the_order_given_with_extra_options(
    fake_path: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _run(fake_path, out, "one multi compare", MULTI_ARGS="--cost-from earlier.csv")
    assert result.returncode == 3, result.stdout + result.stderr
    log = result.stdout + result.stderr
    assert log.index("one: exit 0") < log.index("multi: exit 0")
    assert "--cost-from earlier.csv" in (out / "multi" / "args.txt").read_text()
    assert "--cost-from" not in (out / "one" / "args.txt").read_text()

    unknown = _run(fake_path, tmp_path / "other", "once")
    assert unknown.returncode == 1 and "unknown phase once" in unknown.stdout
