"""The harness's shape (docs/architecture.md): stages import only earlier stages, no import cycles,
one definition of each shared constant, modules of a readable size."""

from __future__ import annotations

import ast
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
MAX_LINES = 300


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


def test_modules_stay_readable() -> None:
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


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
