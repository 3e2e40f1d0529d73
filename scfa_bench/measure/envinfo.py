"""The machine a run happened on: card, driver, CUDA, torch, triton, python, git revision.

Shared by `scfa-bench env` and the `.meta.json` written next to every results CSV. Every probe
is best-effort: a missing tool gives "n/a", never an exception.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from scfa_bench import __version__
from scfa_bench.constants import HOPPER_OFF
from scfa_bench.measure.memory import nvml_handle, nvml_status

NOT_AVAILABLE = "n/a"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def use_interpreter_without_cuda() -> None:
    """Without CUDA, run Triton kernels through the interpreter (must precede importing triton)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when available, else 'cpu'; 'cuda' without a GPU is an error."""
    from scfa_bench.errors import InputError

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "device 'cuda' requested (suite key 'device' or --device) but torch sees no CUDA "
            "device; run on a GPU machine, or pass --device cpu"
        )
    if requested not in ("cuda", "cpu"):
        raise InputError(f"device must be auto, cuda or cpu; got {requested!r}")
    return requested


def device_name(device: str) -> str:
    """The card's name ("NVIDIA H100 80GB HBM3") or "cpu"."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return "cpu"


def _triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except Exception:
        return NOT_AVAILABLE


def git_revision() -> str:
    """HEAD of the repository holding scfa_bench, with '-dirty' for local changes.

    A copy of the tree without `.git` (a CI artifact, a remote GPU machine) can name its
    revision in SCFA_BENCH_GIT_REV.
    """
    override = os.environ.get("SCFA_BENCH_GIT_REV")
    if override:
        return override
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return NOT_AVAILABLE
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return NOT_AVAILABLE


# Kernel files whose whole code is hashed: the tile tables and how a launch picks them.
_CONFIG_FILES = ("config.py",)
# Kernel files of the Hopper (Gluon) path. It runs only where a run asks for it (SCFA_HOPPER=1,
# `scfa_kernels.hopper_requested`), so its code has its own hash: a change to it leaves
# measurements of the portable path current.
_HOPPER_PREFIX = "_gluon"


def _kernel_folder(folder: Path | None) -> Path | None:
    """`folder`, or that of the installed `scfa_kernels` package (found without importing
    it); None when absent."""
    if folder is not None:
        return folder
    try:
        spec = importlib.util.find_spec("scfa_kernels")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _device_hash(folder: Path | None, hopper: bool) -> str:
    """SHA-256 of the device code of the kernel files of one path; "n/a" when none."""
    folder = _kernel_folder(folder)
    if folder is None:
        return NOT_AVAILABLE
    sources = [
        source
        for source in sorted(folder.glob("*.py"))
        if source.name.startswith(_HOPPER_PREFIX) == hopper
    ]
    if not sources:
        return NOT_AVAILABLE
    digest = hashlib.sha256()
    for source in sources:
        code = device_code(source.read_text(encoding="utf-8"), whole=source.name in _CONFIG_FILES)
        if code:
            digest.update(source.name.encode() + b"\0" + code.encode() + b"\0")
    return digest.hexdigest()


def kernels_hash(folder: Path | None = None) -> str:
    """SHA-256 of the device code of the installed `scfa_kernels` package (or `folder`), found
    without importing it; "n/a" when absent. The Hopper path's files are left out
    (`hopper_kernels_hash`).

    Device code: every `@...jit` function and the module-level constants of the files that
    hold them, plus the whole of `config.py` (tile tables), each as `ast.unparse` of its
    syntax tree with docstrings dropped, so comments, docstrings and formatting do not count
    and host-side code (launches, plans, tests) does not either. Recorded in the meta so
    `check` can tell a baseline measured on other kernels.
    """
    return _device_hash(folder, hopper=False)


def hopper_kernels_hash(folder: Path | None = None) -> str:
    """The same hash over the Hopper path's files (`_gluon*.py`) only."""
    return _device_hash(folder, hopper=True)


def hopper_kernels_run() -> str:
    """What a run records of the Hopper path: its `hopper_kernels_hash` when the run asks for
    it (it then runs wherever it supports the card, dtype and shape), else "off"."""
    try:
        from scfa_kernels import hopper_requested
    except Exception:  # no kernels, or no Triton to import them with
        return HOPPER_OFF
    return hopper_kernels_hash() if hopper_requested() else HOPPER_OFF


def _is_jit(decorator: ast.expr) -> bool:
    """`@triton.jit`, `@jit`, `@gluon.jit`, and those called with arguments."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name == "jit"


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef) or not body:
            continue
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            if isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def device_code(text: str, *, whole: bool = False) -> str:
    """The device code of one kernel file as normalised source ("" when it has none): its
    jit functions and module-level assignments (or, with `whole`, the whole module)."""
    tree = _without_docstrings(ast.parse(text))
    if whole:
        return ast.unparse(tree)
    statements = list(_module_level(tree.body))
    jitted = [
        node
        for node in statements
        if isinstance(node, ast.FunctionDef) and any(map(_is_jit, node.decorator_list))
    ]
    if not jitted:
        return ""
    constants = [node for node in statements if isinstance(node, ast.Assign | ast.AnnAssign)]
    return "\n".join(ast.unparse(node) for node in constants + jitted)


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The module's statements, with those inside module-level `if` and `try` blocks (the
    Gluon kernels are defined under `if GLUON_IMPORT_ERROR is None:`)."""
    for node in body:
        if isinstance(node, ast.If):
            yield from _module_level(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            yield from _module_level(node.body + node.orelse + node.finalbody)
        else:
            yield node


def _nvml_facts() -> dict[str, Any]:
    """Driver and clocks from NVML, when it works."""
    facts: dict[str, Any] = {"driver": NOT_AVAILABLE, "clocks": NOT_AVAILABLE}
    ok, _ = nvml_status()
    if not ok:
        return facts
    try:
        import pynvml

        driver = pynvml.nvmlSystemGetDriverVersion()
        facts["driver"] = driver.decode() if isinstance(driver, bytes) else str(driver)
        handle = nvml_handle()
        if handle is not None:
            facts["clocks"] = {
                "sm_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
                "sm_max_mhz": pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
                "mem_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
            }
    except Exception:
        pass  # partial facts are still useful
    return facts


def environment(device: str | None = None) -> dict[str, Any]:
    """Everything worth recording about the machine; `device` defaults to auto-detection."""
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    nvml_ok, nvml_reason = nvml_status()
    nvml = _nvml_facts()
    return {
        "device_name": device_name(dev),
        "device": dev,
        "driver": nvml["driver"],
        "cuda": torch.version.cuda or NOT_AVAILABLE,
        "torch": torch.__version__,
        "triton": _triton_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_rev": git_revision(),
        "kernels_hash": kernels_hash(),
        "hopper_kernels_hash": hopper_kernels_run(),
        "hostname": socket.gethostname(),
        "nvml": "available" if nvml_ok else f"unavailable ({nvml_reason})",
        "clocks": nvml["clocks"],
        "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
        "scfa_bench_version": __version__,
    }
