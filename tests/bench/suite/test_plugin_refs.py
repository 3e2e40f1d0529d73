"""A suite from someone else is safe to inspect: loading, validating and planning it never run
its plugin code; references must resolve (in the suite's folder, or on sys.path without
importing); the code runs only through `register_suite_plugins(suite, allow=True)`."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scfa_bench.cli import app
from scfa_bench.errors import EXIT_BAD_INPUT, InputError
from scfa_bench.impls import registry
from scfa_bench.impls.plugins import ENTRY_POINT_GROUP
from scfa_bench.suite.consent import register_suite_plugins
from scfa_bench.suite.grid import expand, impl_axes
from scfa_bench.suite.parse import load_suite
from scfa_bench.suite.plugin_refs import resolve_reference, static_pattern

# Any import of it leaves MARKER next to it: the evidence that plugin code ran.
EVIL = """
from pathlib import Path

Path(__file__).with_name("MARKER").write_text("ran")

def attn(q, k, v):
    return q

attn.devices = ("cpu",)

def hashed(q, k, v, q_hash, k_hash):
    return q

hashed.devices = ("cpu",)

def dropped(q, k, v):
    return q

dropped.pattern = "qk"
dropped.devices = ("cpu",)

def unclear(q, k, v, *masks):
    return q

unclear.pattern = "h" + "ash"
unclear.devices = ("cpu",)

def cuda_only(q, k, v):
    return q
"""

SUITE = """\
name: plugged
shape: {{batch: 1, heads: 1, head_dim: 16, dtype: fp32}}
sweep: {{seq_len: [16, 32], {sweep}}}
implementations: [{first}, {refs}]
device: cpu
modes: [fwd]
"""

runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path):
    """A suite folder holding evil.py; afterwards no trace of it in the registry or modules."""
    suite_dir = tmp_path / "suites"
    suite_dir.mkdir()
    (suite_dir / "evil.py").write_text(textwrap.dedent(EVIL))
    names, modules = set(registry.all_specs()), set(sys.modules)
    yield suite_dir
    for name in set(registry.all_specs()) - names:
        registry.unregister(name)
    for module in set(sys.modules) - modules:
        del sys.modules[module]


def write_suite(
    folder: Path, refs: str, *, first: str = "naive_hash", sweep: str = "n_buckets: [2]"
) -> Path:
    """A suite in `folder` listing `first`, then `refs` (from implementations[1] on)."""
    path = folder / "suite.yaml"
    path.write_text(SUITE.format(refs=refs, first=first, sweep=sweep))
    return path


def marker(folder: Path) -> Path:
    return folder / "MARKER"


def test_loading_validating_and_planning_run_no_plugin_code(folder: Path) -> None:
    path = write_suite(folder, "evil.py:attn, evil.py:hashed")
    suite = load_suite(path)
    assert suite.implementations == ("naive_hash", "evil.py:attn", "evil.py:hashed")
    assert suite.baseline == "evil.py:attn"  # a dense plugin, as its source says
    assert impl_axes(suite, "evil.py:hashed") == ("n_buckets",)  # read, not run
    assert len(expand(suite)) == 6
    for argv in (["validate", str(path)], ["run", str(path), "--dry-run"]):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, result.output
    assert not marker(folder).exists()
    assert "evil.py:attn" not in registry.all_specs()


def test_registering_needs_consent_and_names_each_plugin(folder: Path) -> None:
    suite = load_suite(write_suite(folder, "evil.py:attn, evil.py:hashed"))
    with pytest.raises(InputError) as info:
        register_suite_plugins(suite, allow=False)
    message = str(info.value)
    assert "suite plugged names plugin code that would run" in message
    assert "`evil.py:attn` (implementations[1])" in message
    assert "`evil.py:hashed` (implementations[2])" in message
    assert "--allow-plugins" in message
    assert not marker(folder).exists()

    assert register_suite_plugins(suite, allow=True) == ["evil.py:attn", "evil.py:hashed"]
    assert marker(folder).read_text() == "ran"
    assert registry.get_spec("evil.py:hashed").pattern == "hash"
    assert "failed" not in registry.get_spec("evil.py:attn").description


def test_a_suite_without_plugins_needs_no_consent(folder: Path) -> None:
    suite = load_suite(write_suite(folder, "naive_qk", sweep="n_buckets: [2], drop_rate: [0.5]"))
    assert register_suite_plugins(suite, allow=False) == []


def test_module_references_resolve_without_importing_their_packages(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = folder / "lib" / "evilpkg_for_test"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from pathlib import Path\n" + _marker_line(folder))
    (package / "kernels.py").write_text(_marker_line(folder) + "def attn(q, k, v):\n    return q\n")
    monkeypatch.syspath_prepend(str(folder / "lib"))
    suite = load_suite(write_suite(folder, "evilpkg_for_test.kernels:attn"))
    assert impl_axes(suite, "evilpkg_for_test.kernels:attn") == ()
    assert not marker(folder).exists()
    assert "evilpkg_for_test" not in sys.modules
    with pytest.raises(InputError, match=r"implementations\[1\].*evilpkg_for_test.nope"):
        load_suite(write_suite(folder, "evilpkg_for_test.nope:attn"))
    assert not marker(folder).exists()


def _marker_line(folder: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker(folder))!r}).write_text('ran')\n"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no_such_mod_xyz:attn", "module 'no_such_mod_xyz' not found"),
        ("missing.py:attn", "plugin file not found"),
        ("../evil.py:attn", "outside the suite's folder"),
        ("sub/../../evil.py:attn", "outside the suite's folder"),
        ("{absolute}:attn", "outside the suite's folder"),
    ],
)
def test_references_that_do_not_resolve_name_their_key(folder: Path, ref: str, message: str):
    (folder.parent / "evil.py").write_text(textwrap.dedent(EVIL))  # exists, but outside
    ref = ref.replace("{absolute}", str(folder.parent / "evil.py"))
    path = write_suite(folder, ref)
    with pytest.raises(InputError) as info:
        load_suite(path)
    text = str(info.value)
    assert f"{path}: implementations[1]" in text and message in text, text
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == EXIT_BAD_INPUT and message in result.output
    assert not marker(folder).exists() and not marker(folder.parent).exists()


def test_files_outside_the_folder_need_allow_outside(folder: Path) -> None:
    (folder.parent / "evil.py").write_text(textwrap.dedent(EVIL))
    path = write_suite(folder, f"{folder.parent / 'evil.py'}:attn, ../evil.py:attn")
    suite = load_suite(path, allow_outside=True)
    assert len(suite.implementations) == 3
    assert load_suite(write_suite(folder, "sub/../evil.py:attn")).implementations[1]
    assert not marker(folder.parent).exists()


def test_a_literal_pattern_is_checked_at_parse_an_unclear_one_later(folder: Path) -> None:
    with pytest.raises(InputError, match=r"'evil.py:dropped' uses axis 'drop_rate', so sweep"):
        load_suite(write_suite(folder, "evil.py:dropped"))
    suite = load_suite(write_suite(folder, "evil.py:unclear"))
    with pytest.raises(InputError, match=r"'evil.py:unclear'.*--allow-plugins"):
        impl_axes(suite, "evil.py:unclear")
    assert not marker(folder).exists()


@pytest.mark.parametrize(
    ("ref", "sweep", "message"),
    [
        ("evil.py:unclear", "drop_rate: [0.5]", "uses axis 'n_buckets', so sweep.n_buckets is"),
        (
            "evil.py:cuda_only",
            "drop_rate: [0.5]",
            "device: evil.py:cuda_only runs on cuda, not on cpu (implementations[1])",
        ),
    ],
)
def test_registration_checks_what_parsing_could_not(
    folder: Path, ref: str, sweep: str, message: str
) -> None:
    suite = load_suite(write_suite(folder, ref, first="naive_qk", sweep=sweep))
    with pytest.raises(InputError) as info:
        register_suite_plugins(suite, allow=True)
    assert message in str(info.value) and str(folder / "suite.yaml") in str(info.value)


def test_unused_sweep_axes_warn(folder: Path) -> None:
    seen: list[str] = []
    both = "n_buckets: [2], drop_rate: [0.5]"
    load_suite(write_suite(folder, "naive_hash", first="naive_qk", sweep=both), warn=seen.append)
    assert seen == []
    load_suite(write_suite(folder, "evil.py:attn", sweep=both), warn=seen.append)
    assert len(seen) == 1 and "sweep.drop_rate" in seen[0] and "warning" in seen[0], seen
    seen.clear()
    load_suite(write_suite(folder, "evil.py:dropped", sweep=both), warn=seen.append)
    load_suite(write_suite(folder, "evil.py:unclear", sweep=both), warn=seen.append)
    assert seen == []  # used; or unknown until registered


def test_entry_points_need_no_consent(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (folder / "ep_module_for_test.py").write_text(
        "def attn(q, k, v):\n    return q\n\nattn.devices = ('cpu',)\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    ep = importlib.metadata.EntryPoint("ep_for_test", "ep_module_for_test:attn", ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [ep])
    suite = load_suite(write_suite(folder, "ep_for_test"))
    assert register_suite_plugins(suite, allow=False) == []
    assert registry.get_spec("ep_for_test").pattern == "dense"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("def f(q, k, v, q_hash, k_hash): ...", "hash"),
        ("def f(q, k, v, q_keep, k_keep): ...", "qk"),
        ("def f(q, k, v, q_hash, *k_hash): ...", "hash"),  # as inspect.signature names them
        ("def f(q, k, v): ...\nf.pattern = 'qk'", "qk"),
        ("def f(q, k, v): ...\nif True:\n    f.pattern = 'qk'", "qk"),
        ("def f(q, k, v): ...\nf.pattern = 'qk'\nf.pattern = 'hash'", None),
        ("def f(q, k, v): ...\nsetattr(f, 'pattern', 'hash')", None),
        ("def f(q, k, v): ...\nf.pattern, x = 'hash', 1", None),
        ("def f(q, k, v): ...\nf = g", None),  # rebound: the def is not what registers
        ("from x import f", None),
        ("@wrap\ndef f(q, k, v): ...", None),
        ("class f:\n    pattern = 'hash'", "hash"),
        ("class f(Base): ...", None),  # inherited or missing: registration says
        ("def f(q, k, v): ...\nf.pattern = 'sparse'", None),
    ],
)
def test_static_pattern_only_when_the_source_is_plain(
    tmp_path: Path, source: str, expected: str | None
) -> None:
    (tmp_path / "p.py").write_text(source + "\n")
    ref = resolve_reference("p.py:f", tmp_path)
    assert static_pattern(ref) == expected
