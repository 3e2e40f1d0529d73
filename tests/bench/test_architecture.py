"""The harness's shape (docs/architecture.md): stages import only earlier stages, no import cycles,
one definition of each shared constant, functions of a readable length, and no references to a
private issue tracker in the code, tests or kernel notes."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import scfa_bench

from .results_factory import suite_rows, write_results

PACKAGE_DIR = Path(scfa_bench.__file__).resolve().parent
# Stage of each top-level module or sub-package, in data-flow order; a module may import its own
# stage or an earlier one, never a later one.
STAGES = {
    "__init__": 0,
    "errors": 0,
    "constants": 0,
    "impls": 1,
    "e2e": 1,
    "quality": 1,
    "suite": 2,
    "measure": 3,
    "results": 4,
    "run": 5,
    "analysis": 6,
    "cli": 7,
}
MAX_FUNCTION_LINES = 80
REPO = PACKAGE_DIR.parent
# Functions over MAX_FUNCTION_LINES today, being split by purpose; remove each entry once its
# function is split (the test then keeps it short). Keys: "<path from the repo root>::<name>".
LONG_FUNCTION_EXCEPTIONS: set[str] = set()
# "issue N" means nothing to a reader without access to our tracker: say what the problem was,
# or cite a public upstream reference (triton-lang/triton#9171 does not match). A number with a
# decimal point ("issue 1.43 ms") is not a reference.
TRACKER_REFERENCE = re.compile(r"\b[Ii]ssues? #?\d+\b(?!\.\d)")
TRACKER_SCAN_DIRS = ("scfa_bench", "kernels", "tests")
TRACKER_SCAN_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".sh", ".toml", ".cfg"}
# Files with tracker references today, being reworded; remove each entry once it is clean.
TRACKER_REFERENCE_EXCEPTIONS: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
    """Every scfa_bench module `name` imports, at the top or inside a function."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            # `from pkg import mod` imports the module pkg.mod when there is one.
            targets = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _stage(module: str) -> int:
    parts = module.split(".")
    return STAGES[parts[1] if len(parts) > 1 else "__init__"]


def test_every_module_belongs_to_a_stage() -> None:
    for module in MODULES:
        parts = module.split(".")
        assert len(parts) == 1 or parts[1] in STAGES, (
            f"{module}: add its stage to docs/architecture.md"
        )


def later_stage_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} (stage {_stage(module)}) imports {target} (stage {_stage(target)})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if _stage(target) > _stage(module)
    ]


def test_no_module_imports_a_later_stage() -> None:
    wrong = later_stage_imports(GRAPH)
    assert not wrong, "\n".join(wrong)


def test_the_stage_check_finds_a_backward_import() -> None:
    # The cycle this layout removed: the suite asked the registry, which imported the inputs.
    graph = {"scfa_bench.impls.registry": {"scfa_bench.measure.inputs"}}
    assert later_stage_imports(graph) == [
        "scfa_bench.impls.registry (stage 1) imports scfa_bench.measure.inputs (stage 3)"
    ]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles of a module graph (depth-first; a grey node met again closes a cycle)."""
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "grey"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "grey":
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = "black"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycle() -> None:
    cycles = find_cycles(GRAPH)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_search_finds_cycles() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("MODES", "scfa_bench.constants"),
        ("DTYPES", "scfa_bench.constants"),
        ("DEVICES", "scfa_bench.constants"),
        ("STATUSES", "scfa_bench.constants"),
        ("FAILING_STATUSES", "scfa_bench.constants"),
        ("PATTERN_AXES", "scfa_bench.constants"),
        ("EXIT_OK", "scfa_bench.errors"),
        ("EXIT_FAILURE", "scfa_bench.errors"),
        ("EXIT_BAD_INPUT", "scfa_bench.errors"),
        ("EXIT_INTERRUPTED", "scfa_bench.errors"),
        ("FORWARD_TOLERANCE", "scfa_bench.measure.correctness"),
        ("GRADIENT_TOLERANCE", "scfa_bench.measure.correctness"),
    ],
)
def test_each_shared_constant_is_defined_once(name: str, home: str) -> None:
    defined_in = set()
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign):
                targets = [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                defined_in.add(module)
    assert defined_in == {home}


def long_functions(source: str, where: str) -> dict[str, int]:
    """`"<where>::<name>": lines` of every function or method of `source` (nested ones too,
    each on its own; decorators included) longer than MAX_FUNCTION_LINES."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines = (node.end_lineno or node.lineno) - first + 1
            if lines > MAX_FUNCTION_LINES:
                found[f"{where}::{node.name}"] = lines
    return found


def test_functions_stay_readable() -> None:
    long: dict[str, int] = {}
    for path in MODULES.values():
        where = path.relative_to(REPO).as_posix()
        long.update(long_functions(path.read_text(encoding="utf-8"), where))
    new = {name: n for name, n in long.items() if name not in LONG_FUNCTION_EXCEPTIONS}
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines (split them by purpose): {new}"


def test_the_length_check_counts_a_function_from_its_decorator_to_its_end() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 2))
    fits = f"@decorator\ndef fits():\n{body}\n"  # exactly MAX_FUNCTION_LINES lines
    assert long_functions(fits, "m.py") == {}
    too_long = f"@decorator\ndef long():\n{body}\n    return x0\n"
    assert long_functions(too_long, "m.py") == {"m.py::long": MAX_FUNCTION_LINES + 1}
    nested = f"class C:\n    def method(self):\n    {body.replace(chr(10), chr(10) + '    ')}\n"
    nested += "        return 1\n        return 2\n"
    assert list(long_functions(nested, "m.py")) == ["m.py::method"]


def tracker_references(text: str) -> list[str]:
    return [m.group(0) for m in TRACKER_REFERENCE.finditer(text)]


def _scanned_files() -> list[Path]:
    files = []
    for folder in TRACKER_SCAN_DIRS:
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and path.suffix in TRACKER_SCAN_SUFFIXES:
                if "__pycache__" not in path.parts:
                    files.append(path)
    return files


def test_no_private_tracker_references() -> None:
    if not (REPO / "tests").is_dir():
        pytest.skip("installed without the source tree")
    offenders = {}
    for path in _scanned_files():
        where = path.relative_to(REPO).as_posix()
        found = tracker_references(path.read_text(encoding="utf-8", errors="replace"))
        if found and where not in TRACKER_REFERENCE_EXCEPTIONS:
            offenders[where] = found
    assert not offenders, f"say what the problem was instead of citing our tracker: {offenders}"


def test_the_tracker_check_tells_our_references_from_upstream_ones() -> None:
    ours = "Is" + "sue"  # spelled apart so that this file does not match itself
    assert tracker_references(f"{ours} 12: the gate refused") == [f"{ours} 12"]
    assert tracker_references(f"before ({ours.lower()} 9)") == [f"{ours.lower()} 9"]
    assert tracker_references(f"{ours}s 8 and 9") == [f"{ours}s 8"]
    assert tracker_references(f"{ours} #8") == [f"{ours} #8"]
    assert tracker_references("numpy >= 2.4 (triton-lang/triton#9171)") == []
    assert tracker_references(f"read 1.86 ms ({ours.lower()} 1.43 ms)") == []
    assert tracker_references(f"{ours.lower()}d 3 times; tissue 4") == []


def test_check_works_where_matplotlib_cannot_be_imported(tmp_path: Path) -> None:
    """`check` needs no plotting: a broken matplotlib must not take the command away."""
    csv = write_results(tmp_path / "run.csv", suite_rows(seq_lens=(1024,), modes=("fwd",)))
    script = (
        "import sys; sys.modules['matplotlib'] = None\n"  # any import of it now fails
        "from scfa_bench.cli import app\n"
        f"app(['check', {str(csv)!r}, '--baseline', {str(csv)!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS" in done.stdout


def test_every_sub_package_is_shipped() -> None:
    """pyproject.toml lists packages one by one; a new stage missing there would not install."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = PACKAGE_DIR.parent / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("installed without the source tree")
    listed = set(tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["packages"])
    packages = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    assert packages - listed == set()


def _nightly_entries() -> tuple[str, ...]:
    """tests/conftest.py's NIGHTLY, read without importing it (it is pytest's, not a module)."""
    tree = ast.parse((REPO / "tests" / "conftest.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "NIGHTLY" for t in targets):
                assert node.value is not None
                return tuple(ast.literal_eval(node.value))
    raise AssertionError("tests/conftest.py defines no NIGHTLY")


def test_every_nightly_entry_names_a_real_test() -> None:
    """A renamed or deleted test would leave its nightly entry matching nothing, silently."""
    if not (REPO / "tests").is_dir():
        pytest.skip("installed without the source tree")
    wrong = []
    for entry in _nightly_entries():
        path, _, rest = entry.partition("::")
        file = REPO / path
        if not file.is_file():
            wrong.append(f"{entry}: no file {path}")
            continue
        names = rest.split("[")[0].split("::") if rest else []
        defined = {
            node.name
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef | ast.ClassDef)
        }
        wrong += [f"{entry}: no {name} in {path}" for name in names if name not in defined]
    assert not wrong, "\n".join(wrong)
