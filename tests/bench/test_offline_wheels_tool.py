"""`tools/offline_wheels.py`: parts and their manifest survive the trip (or say what went
wrong), the extras come from pyproject.toml, transfer batches keep their limit and order, and
the download / install commands around pip (pip itself replaced: no network here)."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .tool_loader import load_tool

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@pytest.fixture
def tool() -> ModuleType:
    return load_tool("offline_wheels")


def _wheel(folder: Path, name: str, size: int, seed: int = 0) -> Path:
    path = folder / name
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def _split_into_manifest(tool: ModuleType, folder: Path) -> tuple[dict[str, Any], bytes]:
    """A 1000-byte wheel in parts of 300 bytes and a 50-byte one kept whole, with MANIFEST.json;
    the big wheel's bytes."""
    data = _wheel(folder, "big-1.0-py3-none-any.whl", 1000, seed=1).read_bytes()
    _wheel(folder, "small-1.0-py3-none-any.whl", 50, seed=2)
    entries = [tool.wheel_entry(folder / n, 300) for n in sorted(p.name for p in folder.iterdir())]
    tool.write_manifest(folder, entries)
    return entries[0], data


def test_split_and_join_give_back_the_same_bytes(tool: ModuleType, tmp_path: Path) -> None:
    entry, data = _split_into_manifest(tool, tmp_path)
    assert entry["size"] == 1000 and entry["sha256"] == hashlib.sha256(data).hexdigest()
    names = [f"big-1.0-py3-none-any.whl.part00{i}" for i in range(4)]
    assert [part["name"] for part in entry["parts"]] == names
    assert [part["size"] for part in entry["parts"]] == [300, 300, 300, 100]
    assert not (tmp_path / entry["name"]).exists()  # the parts travel, not the whole file
    small = json.loads((tmp_path / "MANIFEST.json").read_text())["wheels"][1]
    assert small["parts"] == [] and (tmp_path / small["name"]).stat().st_size == 50
    assert tool.check_folder(tmp_path)["wheels"][0] == entry
    joined = tool.join_parts(entry, tmp_path)
    assert joined == tmp_path / entry["name"] and joined.read_bytes() == data
    assert hashlib.sha256(joined.read_bytes()).hexdigest() == entry["sha256"]


def test_split_of_an_exact_multiple_has_no_empty_part(tool: ModuleType, tmp_path: Path) -> None:
    parts = tool.split_file(_wheel(tmp_path, "w.whl", 600), 300)
    assert [p.stat().st_size for p in parts] == [300, 300]
    assert b"".join(p.read_bytes() for p in parts) == (tmp_path / "w.whl").read_bytes()


@pytest.mark.parametrize("damage", ["corrupt", "missing", "short"])
def test_a_damaged_part_is_named_with_exit_2(
    tool: ModuleType, tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    entry, _ = _split_into_manifest(tool, tmp_path)
    part = tmp_path / entry["parts"][2]["name"]
    if damage == "corrupt":  # same size, one byte flipped
        data = bytearray(part.read_bytes())
        data[7] ^= 0xFF
        part.write_bytes(bytes(data))
    elif damage == "missing":
        part.unlink()
    else:
        part.write_bytes(part.read_bytes()[:-1])
    expected = {"corrupt": "corrupted", "missing": "missing", "short": "299 bytes"}[damage]
    with pytest.raises(tool.ToolError, match=rf"whl\.part002 \(part 3 of 4 .*{expected}"):
        tool.join_parts(entry, tmp_path)
    assert not (tmp_path / entry["name"]).exists()
    for command in ("verify", "install"):
        assert tool.main([command, str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "part002" in err and expected in err and "Traceback" not in err


def test_a_corrupted_whole_wheel_and_a_missing_manifest(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tool.main(["verify", str(tmp_path)]) == 2
    assert "MANIFEST.json: missing" in capsys.readouterr().err
    _split_into_manifest(tool, tmp_path)
    small = tmp_path / "small-1.0-py3-none-any.whl"
    small.write_bytes(b"x" * 50)
    assert tool.main(["verify", str(tmp_path)]) == 2
    assert "small-1.0-py3-none-any.whl: sha256 differs" in capsys.readouterr().err


def test_read_extras_from_the_project(tool: ModuleType) -> None:
    peers = tool.read_extras(PYPROJECT, ["peers"])
    names = {tool.normalize(re.split(r"[<>=!~\[;\s]", req)[0]) for req in peers}
    assert {"fla-core", "einops", "adasplash"} <= names
    both = tool.read_extras(PYPROJECT, ["peers", "fa4", "peers"])
    assert both[: len(peers)] == peers and len(both) == len(set(both))
    assert any(req.startswith("flash-attn-4") for req in both[len(peers) :])
    with pytest.raises(tool.ToolError, match=r"no extra 'nope' .*its extras: .*peers"):
        tool.read_extras(PYPROJECT, ["peers", "nope"])


def test_batches_keep_the_limit_and_the_order(tool: ModuleType) -> None:
    rng = random.Random(3)
    files = [(f"f{i}", rng.randint(0, 100)) for i in range(200)]
    files[50:50] = [("w.part000", 100), ("w.part001", 100), ("w.part002", 7)]
    for limit, max_files in ((100, 0), (150, 0), (250, 3), (100_000, 0)):
        cut = tool.batches(files, limit, max_files)
        assert [file for batch in cut for file in batch] == files
        assert all(batch and sum(size for _, size in batch) <= limit for batch in cut)
        assert max_files == 0 or all(len(batch) <= max_files for batch in cut)
        for batch, after in itertools.pairwise(cut):  # closed only when the next file is over
            full = sum(size for _, size in batch) + after[0][1] > limit
            assert full or len(batch) == max_files
        if limit == 100_000 and max_files == 0:
            assert len(cut) == 1
    # a file that fits exactly still goes in
    assert tool.batches([("a", 60), ("b", 40), ("c", 1)], 100) == [
        [("a", 60), ("b", 40)],
        [("c", 1)],
    ]
    with pytest.raises(ValueError, match="big"):
        tool.batches([("a", 1), ("big", 101)], 100)


LINUX = "cp312-cp312-manylinux_2_28_x86_64.whl"


def test_default_skip_spares_the_cutlass_dsl(tool: ModuleType) -> None:
    skip = tool.DEFAULT_SKIP
    for wheel in (f"torch-2.11.0-{LINUX}", "Jinja2-3.1.6-py3-none-any.whl",
                  "typing_extensions-4.16.0-py3-none-any.whl", f"MarkupSafe-3.0.4-{LINUX}",
                  "nvidia_cublas-13.1.0.3-py3-none-manylinux_2_27_x86_64.whl",
                  "nvidia_cudnn_cu13-9.19.0.56-py3-none-manylinux_2_27_x86_64.whl"):  # fmt: skip
        assert tool.is_skipped(tool.wheel_project(wheel), skip), wheel
    for wheel in (f"nvidia_cutlass_dsl_libs_cu12-4.8.1-{LINUX}",
                  "nvidia_cutlass_dsl-4.8.1-py3-none-any.whl",
                  "flash_attn_4-4.0.0b40-py3-none-any.whl", f"cuda_bindings-13.5.0-{LINUX}",
                  "einops-0.8.2-py3-none-any.whl"):  # fmt: skip
        assert not tool.is_skipped(tool.wheel_project(wheel), skip), wheel
    assert tool.is_skipped("nvidia-nccl-cu12", ["nvidia-*-cu12"])


def test_platforms_list_every_older_manylinux_tag(tool: ModuleType) -> None:
    tags = tool.manylinux_platforms("2.39", "x86_64")
    assert tags[0] == "manylinux_2_39_x86_64" and "manylinux_2_28_x86_64" in tags
    assert {"manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert "manylinux_2_40_x86_64" not in tags and len(tags) == len(set(tags)) == 35 + 3


def test_download_and_install_around_pip(
    tool: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    commands: list[list[str]] = []
    constraints: list[str] = []
    cutlass = f"nvidia_cutlass_dsl_libs_cu12-4.8.1-{LINUX}"

    def fake_pip(command: list[str]) -> int:
        commands.append(command)
        if "download" in command:
            dest = Path(command[command.index("--dest") + 1])
            constraints.append(Path(command[command.index("--constraint") + 1]).read_text())
            _wheel(dest, f"torch-2.11.0-{LINUX}", 500)
            _wheel(dest, cutlass, int(2.5 * tool.MIB))
            _wheel(dest, "einops-0.8.2-py3-none-any.whl", 300)
        return 0

    monkeypatch.setattr(tool, "run", fake_pip)
    dest = tmp_path / "whl"
    dest.mkdir()
    (dest / "keep.txt").write_text("not ours")
    argv = ["download", "peers", "--dest", str(dest), "--part-mib", "1", "--batch-mib", "2"]
    assert tool.main(argv) == 0
    download = commands[0]
    assert download[download.index("--python-version") + 1] == "3.12"
    assert "manylinux_2_28_x86_64" in download and "manylinux2014_x86_64" in download
    assert download[-3:] == tool.read_extras(PYPROJECT, ["peers"])
    assert constraints == ["torch==2.11.0\n"]
    out = capsys.readouterr().out
    transfers = [line.split(": ")[1].split() for line in out.splitlines() if "  transfer " in line]
    assert transfers == [  # 2 MiB at most; parts first, the small files fill the last room
        [f"{cutlass}.part000", f"{cutlass}.part001"],
        [f"{cutlass}.part002", "einops-0.8.2-py3-none-any.whl", "MANIFEST.json"],
    ]
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    assert [w["name"].split("-")[0] for w in manifest["wheels"]] == [
        "einops", "nvidia_cutlass_dsl_libs_cu12"]  # fmt: skip
    assert len(manifest["wheels"][1]["parts"]) == 3
    assert [s["name"].split("-")[0] for s in manifest["skipped"]] == ["torch"]
    assert sorted(p.name for p in dest.iterdir())[-1] == f"{cutlass}.part002"
    assert not list(dest.glob(".download-*")) and (dest / "keep.txt").exists()

    # Again with larger parts: the earlier output goes, what it did not write stays.
    assert tool.main([*argv[:-4], "--part-mib", "2", "--batch-mib", "2"]) == 0
    assert not (dest / f"{cutlass}.part002").exists() and (dest / "keep.txt").exists()
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    assert [len(w["parts"]) for w in manifest["wheels"]] == [0, 2]

    seen: list[list[str]] = []
    monkeypatch.setattr(tool, "_missing", lambda python, names: seen.append(names) or ["torch"])
    assert tool.main(["install", str(dest), "--python", "py3"]) == 0
    assert seen == [["torch"]] and "lacks torch" in capsys.readouterr().err
    install = commands[2]
    assert install[:4] == ["py3", "-m", "pip", "install"]
    assert {"--no-index", "--no-deps"} <= set(install)
    assert install[install.index("--find-links") + 1] == str(dest)
    wheels = [Path(arg) for arg in install if arg.endswith(".whl")]
    assert [w.name for w in wheels] == [w["name"] for w in manifest["wheels"]]
    assert all(w.is_file() for w in wheels)
