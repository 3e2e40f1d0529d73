"""Bring the wheels of this project's optional extras to a GPU machine that has no network.

On a machine with network, download the extras' wheels (with their dependencies, minus what the
GPU image already has), split the large ones into parts and write MANIFEST.json:

    python tools/offline_wheels.py download peers fa4 --dest .whl

It prints the files of each transfer batch (60 MiB at most by default: --batch-mib; --batch-files
caps their number of files); carry the batches to the GPU machine into one folder, MANIFEST.json
included. There, check the files and install the wheels (parts are joined and every wheel's size
and sha256 are checked first):

    python tools/offline_wheels.py verify .whl
    python tools/offline_wheels.py install .whl [--python PYTHON]

`install` runs `PYTHON -m pip install --no-index --find-links DIR --no-deps WHEEL...`: no
dependencies are resolved there, the machine must already have the skipped ones (it warns about
any it cannot find). Exit 2, with the file and what is missing or wrong, when a check fails.

The download resolves for CPython --python-version (3.12) on manylinux platforms up to glibc 2.39
on x86_64 (pip takes `--platform manylinux_2_28_x86_64` as that exact tag only, so every older
tag is listed), against --constraint torch==2.11.0 (the image's torch, so that shared
dependencies get versions that fit it). --skip replaces the list of packages left out (default:
DEFAULT_SKIP, printed by --help; `*` patterns allowed, `--skip ''` leaves nothing out). --also
adds requirements beyond the extras' (for example 'flash-attn-4[cu13]').

Standard library only: it runs on the GPU machine before anything is installed.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
MANIFEST = "MANIFEST.json"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# What the GPU image already has, so its wheels are not carried (PEP 503 names; `*` patterns
# allowed). torch 2.11 (CUDA 13.0 build) and everything it brings:
TORCH_AND_ITS_DEPENDENCIES = (
    "torch", "triton", "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "filelock",
    "fsspec", "typing-extensions", "setuptools",
    # its CUDA libraries: `cuda-toolkit[...]` (a metadata package) and the libraries it names,
    "cuda-toolkit", "nvidia-cublas", "nvidia-cuda-cupti", "nvidia-cuda-nvrtc",
    "nvidia-cuda-runtime", "nvidia-cufft", "nvidia-cufile", "nvidia-curand", "nvidia-cusolver",
    "nvidia-cusparse", "nvidia-nvjitlink", "nvidia-nvtx",
    # and the ones torch names itself.
    "nvidia-cudnn-cu13", "nvidia-cusparselt-cu13", "nvidia-nccl-cu13", "nvidia-nvshmem-cu13",
)  # fmt: skip
# Not skipped although present on a torch image or named like its CUDA libraries: FA4's CuTe
# DSL (`nvidia-cutlass-dsl*`, which no torch brings) and `cuda-bindings` / `cuda-pathfinder`
# (small; the DSL needs them, and the version resolved against torch 2.11 fits its range).
DEFAULT_SKIP = (*TORCH_AND_ITS_DEPENDENCIES, "numpy", "pandas")
DEFAULT_CONSTRAINTS = ("torch==2.11.0",)


class ToolError(Exception):
    """A check or step failed; main prints the message and exits 2."""


# --- requirements and names ---------------------------------------------------------------


def read_extras(pyproject: Path, names: Sequence[str]) -> list[str]:
    """The requirements of the optional extras `names`, in order, without repeats."""
    try:
        import tomllib
    except ModuleNotFoundError as missing:  # Python 3.10
        raise ToolError("reading pyproject.toml needs Python 3.11+ (tomllib)") from missing
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ToolError(f"cannot read {pyproject}: {error}") from error
    extras = data.get("project", {}).get("optional-dependencies", {})
    found: list[str] = []
    for name in names:
        if name not in extras:
            known = ", ".join(sorted(extras)) or "none"
            raise ToolError(f"no extra {name!r} in {pyproject} (its extras: {known})")
        found += [req for req in extras[name] if req not in found]
    return found


def normalize(name: str) -> str:
    """PEP 503 form of a project name: `Jinja2`, `typing_extensions` -> `jinja2`, ..."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_project(filename: str) -> str:
    """The normalized project name of a wheel file name."""
    return normalize(filename.split("-", 1)[0])


def is_skipped(project: str, skip: Sequence[str]) -> bool:
    name = normalize(project)
    return any(fnmatch.fnmatchcase(name, normalize(pattern)) for pattern in skip)


def manylinux_platforms(glibc: str = "2.39", arch: str = "x86_64") -> list[str]:
    """Every manylinux tag a system with this glibc accepts, newest first (pip needs them all)."""
    major, minor = (int(part) for part in glibc.split("."))
    if major != 2 or minor < 5:
        raise ToolError(f"glibc {glibc}: expected 2.5 or later")
    tags = [f"manylinux_2_{m}_{arch}" for m in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return tags + [f"{name}_{arch}" for m, name in legacy.items() if m <= minor]


# --- files, parts, manifest ---------------------------------------------------------------


def sha256_of(paths: Sequence[Path]) -> str:
    """sha256 of the files' bytes one after the other."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as stream:
            while block := stream.read(MIB):
                digest.update(block)
    return digest.hexdigest()


def part_name(name: str, index: int) -> str:
    return f"{name}.part{index:03d}"


def split_file(path: Path, part_bytes: int) -> list[Path]:
    """Write `path` as `NAME.part000`, `NAME.part001`, ... of at most `part_bytes` each, next to
    it (earlier parts of that name are removed first); `path` itself stays."""
    if part_bytes <= 0:
        raise ValueError(f"part size must be positive, got {part_bytes}")
    count = max(1, -(-path.stat().st_size // part_bytes))
    if count > 1000:
        raise ToolError(f"{path.name}: {count} parts, more than 1000; use larger parts")
    for old in path.parent.glob(f"{glob_escape(path.name)}.part*"):
        old.unlink()
    parts: list[Path] = []
    with path.open("rb") as stream:
        for index in range(count):
            part = path.with_name(part_name(path.name, index))
            with part.open("wb") as out:
                left = part_bytes
                while left and (block := stream.read(min(MIB, left))):
                    out.write(block)
                    left -= len(block)
            parts.append(part)
    return parts


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def wheel_entry(path: Path, part_bytes: int) -> dict[str, Any]:
    """The manifest entry of a wheel; a wheel larger than `part_bytes` is split into parts
    (the whole file is then removed: the parts are what travels)."""
    entry: dict[str, Any] = {
        "name": path.name,
        "size": path.stat().st_size,
        "sha256": sha256_of([path]),
        "parts": [],
    }
    if entry["size"] > part_bytes:
        parts = split_file(path, part_bytes)
        entry["parts"] = [
            {"name": p.name, "size": p.stat().st_size, "sha256": sha256_of([p])} for p in parts
        ]
        path.unlink()
    return entry


def files_to_carry(entry: dict[str, Any]) -> list[tuple[str, int]]:
    """(name, size) of what travels for one wheel: its parts in order, else the whole file."""
    if entry["parts"]:
        return [(part["name"], part["size"]) for part in entry["parts"]]
    return [(entry["name"], entry["size"])]


def batches(
    files: Sequence[tuple[str, int]], limit_bytes: int, max_files: int = 0
) -> list[list[tuple[str, int]]]:
    """The (name, size) files in their order, cut into consecutive batches of at most
    `limit_bytes` in all (and at most `max_files` files, when positive). ValueError when one
    file alone is larger than the limit."""
    found: list[list[tuple[str, int]]] = []
    total = 0
    for name, size in files:
        if size > limit_bytes:
            raise ValueError(f"{name}: {size} bytes, more than a batch's {limit_bytes}")
        full = bool(found) and 0 < max_files <= len(found[-1])
        if not found or full or total + size > limit_bytes:
            found.append([])
            total = 0
        found[-1].append((name, size))
        total += size
    return found


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not path.is_file():
        raise ToolError(f"{path}: missing (carry {MANIFEST} with the wheels)")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise ToolError(f"{path}: not JSON ({error})") from error
    if not isinstance(manifest, dict) or not isinstance(manifest.get("wheels"), list):
        raise ToolError(f"{path}: not a manifest of this tool (no list of wheels)")
    return manifest


def write_manifest(folder: Path, wheels: list[dict[str, Any]], **info: Any) -> Path:
    path = folder / MANIFEST
    path.write_text(json.dumps({"format": 1, **info, "wheels": wheels}, indent=1) + "\n")
    return path


def entry_problems(entry: dict[str, Any], folder: Path) -> list[str]:
    """What is missing or wrong for one wheel of the manifest ([] when it is whole or all of its
    parts are there with the recorded sizes and hashes); reads, writes nothing."""
    whole = folder / entry["name"]
    if whole.is_file() and whole.stat().st_size == entry["size"]:
        if sha256_of([whole]) == entry["sha256"]:
            return []
        if not entry["parts"]:
            return [f"{whole.name}: sha256 differs from the manifest's (corrupted copy)"]
    elif not entry["parts"]:
        if not whole.is_file():
            return [f"{whole.name}: missing"]
        size = whole.stat().st_size
        return [f"{whole.name}: {size} bytes, the manifest says {entry['size']} (incomplete copy)"]
    problems: list[str] = []
    count = len(entry["parts"])
    for index, part in enumerate(entry["parts"]):
        path = folder / part["name"]
        where = f"{part['name']} (part {index + 1} of {count} of {entry['name']})"
        if not path.is_file():
            problems.append(f"{where}: missing")
        elif path.stat().st_size != part["size"]:
            size = path.stat().st_size
            problems.append(f"{where}: {size} bytes, the manifest says {part['size']}")
        elif "sha256" in part and sha256_of([path]) != part["sha256"]:
            problems.append(f"{where}: sha256 differs from the manifest's (corrupted part)")
    if problems:
        return problems
    parts = [folder / part["name"] for part in entry["parts"]]
    if sum(part["size"] for part in entry["parts"]) != entry["size"]:
        return [f"{entry['name']}: its parts add up to another size than the manifest's"]
    if sha256_of(parts) != entry["sha256"]:
        return [f"{entry['name']}: joined parts' sha256 differs from the manifest's"]
    return []


def join_parts(entry: dict[str, Any], folder: Path) -> Path:
    """The whole wheel of a manifest entry in `folder`, joined from its parts when it is not
    there already; ToolError naming what is missing or wrong."""
    problems = entry_problems(entry, folder)
    if problems:
        raise ToolError("; ".join(problems))
    whole = folder / entry["name"]
    if whole.is_file() and whole.stat().st_size == entry["size"]:
        if sha256_of([whole]) == entry["sha256"]:
            return whole
    joining = whole.with_name(whole.name + ".joining")
    with joining.open("wb") as out:
        for part in entry["parts"]:
            with (folder / part["name"]).open("rb") as stream:
                shutil.copyfileobj(stream, out, MIB)
    if joining.stat().st_size != entry["size"] or sha256_of([joining]) != entry["sha256"]:
        joining.unlink()
        raise ToolError(f"{entry['name']}: joined file differs from the manifest's")
    joining.replace(whole)
    return whole


def check_folder(folder: Path) -> dict[str, Any]:
    """The manifest of `folder` once every wheel of it checks out; ToolError listing every
    problem otherwise."""
    manifest = read_manifest(folder)
    problems = [p for entry in manifest["wheels"] for p in entry_problems(entry, folder)]
    if problems:
        lines = "\n  ".join(problems)
        raise ToolError(f"{folder}: {len(problems)} problem(s):\n  {lines}")
    return manifest


# --- commands -----------------------------------------------------------------------------


def run(command: list[str]) -> int:
    """Run a command, its output going to ours (replaced in tests)."""
    print("$ " + " ".join(command), flush=True)
    return subprocess.call(command)


def _size(size: int) -> str:
    return f"{size / MIB:8.1f} MiB"


def _remove_earlier_output(folder: Path) -> None:
    """Remove the wheels and parts an earlier manifest of `folder` lists (nothing else)."""
    try:
        earlier = read_manifest(folder)
    except ToolError:
        return
    for entry in earlier["wheels"]:
        for name in [entry["name"], *(part["name"] for part in entry["parts"])]:
            (folder / Path(name).name).unlink(missing_ok=True)
    (folder / MANIFEST).unlink()


def download(args: argparse.Namespace) -> int:
    if args.part_mib > args.batch_mib:
        raise ToolError(f"--part-mib {args.part_mib} is larger than --batch-mib {args.batch_mib}")
    requirements = read_extras(args.pyproject, args.extras) + list(args.also)
    dest: Path = args.dest
    dest.mkdir(parents=True, exist_ok=True)
    _remove_earlier_output(dest)
    platforms = args.platform or manylinux_platforms()
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as temp:
        fresh = Path(temp)
        command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:"]
        command += ["--python-version", args.python_version, "--dest", str(fresh)]
        command += [option for tag in platforms for option in ("--platform", tag)]
        if args.constraint:
            constraints = fresh / "constraints.txt"
            constraints.write_text("\n".join(args.constraint) + "\n")
            command += ["--constraint", str(constraints)]
        if run([*command, *requirements]) != 0:
            raise ToolError(
                "pip download failed (see its message above: a requirement or dependency may "
                f"have no wheel for Python {args.python_version} on these platforms)"
            )
        skipped: list[dict[str, Any]] = []
        wheels: list[dict[str, Any]] = []
        for path in sorted(fresh.glob("*.whl"), key=lambda p: p.name.lower()):
            if is_skipped(wheel_project(path.name), args.skip):
                skipped.append({"name": path.name, "size": path.stat().st_size})
                continue
            moved = Path(shutil.move(str(path), dest / path.name))
            wheels.append(wheel_entry(moved, args.part_mib * MIB))
    write_manifest(
        dest, wheels, extras=list(args.extras), requirements=requirements,
        python_version=args.python_version, platforms=platforms,
        constraints=list(args.constraint), skipped=skipped,
    )  # fmt: skip
    print(f"\nWheels in {dest} ({len(wheels)}):")
    for entry in wheels:
        parts = f"  in {len(entry['parts'])} parts" if entry["parts"] else ""
        print(f"  {_size(entry['size'])}  {entry['name']}{parts}")
    print(f"Left out, the GPU machine must have them ({len(skipped)}):")
    for entry in skipped:
        print(f"  {_size(entry['size'])}  {entry['name']}")
    # Parts first: the small files then fill the room their last parts leave.
    carry = [file for entry in wheels if entry["parts"] for file in files_to_carry(entry)]
    carry += [file for entry in wheels if not entry["parts"] for file in files_to_carry(entry)]
    carry.append((MANIFEST, (dest / MANIFEST).stat().st_size))
    cut = batches(carry, args.batch_mib * MIB, args.batch_files)
    print(f"\nCarry in {len(cut)} transfer(s) of at most {args.batch_mib} MiB, into one folder:")
    for number, batch in enumerate(cut, 1):
        total = sum(size for _, size in batch)
        print(f"  transfer {number} ({total / MIB:.1f} MiB): " + " ".join(n for n, _ in batch))
    print("\nThere: python tools/offline_wheels.py install DIR")
    return 0


def verify(args: argparse.Namespace) -> int:
    manifest = check_folder(args.folder)
    total = sum(entry["size"] for entry in manifest["wheels"])
    print(f"{args.folder}: {len(manifest['wheels'])} wheels, {total / MIB:.1f} MiB, all there")
    return 0


def _missing(python: str, projects: list[str]) -> list[str]:
    """Those of `projects` that `python` has no distribution of ([] when it cannot tell)."""
    probe = (
        "import importlib.metadata as m, sys\n"
        "for name in sys.argv[1:]:\n"
        "    try: m.distribution(name)\n"
        "    except m.PackageNotFoundError: print(name)\n"
    )
    try:
        done = subprocess.run(
            [python, "-c", probe, *projects], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return []
    return done.stdout.split()


def install(args: argparse.Namespace) -> int:
    manifest = check_folder(args.folder)
    wheels = [join_parts(entry, args.folder) for entry in manifest["wheels"]]
    command = [args.python, "-m", "pip", "install", "--no-index", "--find-links"]
    command += [str(args.folder), "--no-deps", *(str(path) for path in wheels)]
    code = run(command)
    if code != 0:
        print(f"pip install failed (exit {code})", file=sys.stderr)
        return code
    skipped = sorted({wheel_project(entry["name"]) for entry in manifest.get("skipped", [])})
    missing = _missing(args.python, skipped) if skipped else []
    if missing:
        print(
            "warning: installed without dependencies, and this Python lacks "
            + ", ".join(missing)
            + " (left out of the download as part of the GPU image)",
            file=sys.stderr,
        )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    down = commands.add_parser("download", help="download, split, write the manifest")
    down.add_argument("extras", nargs="+", metavar="EXTRA")
    down.add_argument("--dest", type=Path, required=True)
    down.add_argument("--python-version", default="3.12")
    down.add_argument(
        "--platform", action="append", default=[],
        help="a wheel platform tag (repeat it; default: manylinux tags up to glibc 2.39, x86_64)",
    )  # fmt: skip
    down.add_argument(
        "--skip", type=lambda text: [n.strip() for n in text.split(",") if n.strip()],
        default=list(DEFAULT_SKIP),
        help="comma-separated projects whose wheels are left out (replaces the default: "
        + ",".join(DEFAULT_SKIP) + ")",
    )  # fmt: skip
    down.add_argument(
        "--constraint", action="append", default=None,
        help="a pip constraint for the resolution (repeat it; default: "
        + " ".join(DEFAULT_CONSTRAINTS) + ")",
    )  # fmt: skip
    down.add_argument("--also", action="append", default=[], help="one more requirement")
    down.add_argument("--part-mib", type=int, default=60, help="split wheels larger than this")
    down.add_argument("--batch-mib", type=int, default=60, help="most MiB per transfer")
    down.add_argument("--batch-files", type=int, default=0, help="most files per transfer")
    down.add_argument("--pyproject", type=Path, default=PYPROJECT)
    down.set_defaults(handler=download)
    for name, handler, summary in (
        ("install", install, "check, join the parts, pip install --no-index --no-deps"),
        ("verify", verify, "check that every wheel is there, whole or in parts, intact"),
    ):
        sub = commands.add_parser(name, help=summary)
        sub.add_argument("folder", type=Path, metavar="DIR")
        if name == "install":
            sub.add_argument("--python", default=sys.executable)
        sub.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "download":
        if args.constraint is None:
            args.constraint = list(DEFAULT_CONSTRAINTS)
        if args.part_mib <= 0 or args.batch_mib <= 0:
            print("error: --part-mib and --batch-mib must be positive", file=sys.stderr)
            return 2
    try:
        return args.handler(args)
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
