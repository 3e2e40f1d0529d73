"""Plugins: implementations from a file outside the package and from entry points, measured by
the runner like built-ins; broken plugins become `error` rows naming the plugin."""

from __future__ import annotations

import importlib.metadata
import textwrap
from pathlib import Path

import pytest

from scfa_bench.impls import plugins, registry
from scfa_bench.run.loop import RunOptions, run_suite
from scfa_bench.suite.consent import register_suite_plugins
from scfa_bench.suite.parse import parse_suite

GOOD_PLUGIN = """
import torch
from scfa_kernels import reference

def hash_attention(q, k, v, q_hash, k_hash):
    return reference.hash_sparse_attention(q, k, v, q_hash, k_hash).to(q.dtype)

hash_attention.devices = ("cuda", "cpu")

def qk_attention(q, k, v, q_keep, k_keep):
    return reference.qk_sparse_attention(q, k, v, q_keep, k_keep).to(q.dtype)

qk_attention.devices = ("cuda", "cpu")

def wrong_shape(q, k, v, q_hash, k_hash):
    return q[:, :1]

wrong_shape.devices = ("cpu",)

def wrong_signature(x, y):
    return x

def raises(q, k, v):
    raise RuntimeError("kernel exploded")

raises.devices = ("cpu",)

class Prepared:
    pattern = "hash"
    devices = ("cpu",)

    def available(self, device):
        return True, ""

    def prepare(self, inputs):
        q, k, v, qh, kh = inputs.q, inputs.k, inputs.v, inputs.q_hash, inputs.k_hash
        return lambda: reference.hash_sparse_attention(q, k, v, qh, kh)
"""


@pytest.fixture
def plugin_dir(tmp_path: Path):
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "my_attention.py").write_text(textwrap.dedent(GOOD_PLUGIN))
    (folder / "broken.py").write_text("import no_such_module_anywhere\n")
    names_before = set(registry.all_specs())
    yield folder
    for name in set(registry.all_specs()) - names_before:
        registry.unregister(name)


def _suite(impls, folder: Path, **overrides):
    """The suite, parsed as if its file lay in `folder`, with its plugins registered."""
    data = {
        "name": "plugins",
        "shape": {"batch": 1, "heads": 2, "head_dim": 16, "dtype": "fp32"},
        "sweep": {"seq_len": [16], "n_buckets": [2], "drop_rate": [0.5]},
        "implementations": impls,
        "modes": ["fwd", "fwd+bwd"],
        "timing": {"warmup_ms": 0, "rep_ms": 1e-6},
        "device": "cpu",
        **overrides,
    }
    suite = parse_suite(data, str(folder / "plugins.yaml"))
    register_suite_plugins(suite, allow=True, base_dir=folder)
    return suite


def _rows(tmp_path, impls, folder):
    outcome = run_suite(_suite(impls, folder), RunOptions(out_dir=tmp_path / "results"))
    return outcome.rows


def test_is_reference():
    assert plugins.is_reference("pkg.mod:fn") and plugins.is_reference("a/b.py:fn")
    assert not plugins.is_reference("scfa_hash")


def test_a_plugin_file_runs_like_a_builtin(plugin_dir, tmp_path):
    hash_ref = plugins.register_reference("my_attention.py:hash_attention", plugin_dir)
    qk_ref = plugins.register_reference("my_attention.py:qk_attention", plugin_dir)
    class_ref = plugins.register_reference("my_attention.py:Prepared", plugin_dir)
    assert registry.get_spec(hash_ref).pattern == "hash"
    assert registry.get_spec(qk_ref).axes == ("drop_rate",)
    rows = _rows(tmp_path, [hash_ref, qk_ref, class_ref, "naive_hash"], plugin_dir)
    by_impl = {}
    for row in rows:
        by_impl.setdefault(row.impl, []).append(row)
    for ref in (hash_ref, qk_ref, class_ref):
        assert {r.status for r in by_impl[ref]} == {"ok"}, [r.error for r in by_impl[ref]]
        assert {r.mode for r in by_impl[ref]} == {"fwd", "fwd+bwd"}
        assert all(r.check_rel_err is not None and r.check_rel_err < 1e-5 for r in by_impl[ref])
        assert all(r.ms_median is not None for r in by_impl[ref])


def test_registering_twice_keeps_the_first(plugin_dir):
    ref = "my_attention.py:hash_attention"
    assert plugins.register_reference(ref, plugin_dir) == ref
    assert plugins.register_reference(ref, plugin_dir) == ref


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("broken.py:anything", "import failed: ModuleNotFoundError"),
        ("my_attention.py:nope", "has no attribute 'nope'"),
        ("my_attention.py:wrong_signature", "wrong signature (x, y)"),
    ],
)
def test_plugins_that_cannot_load_give_error_rows_naming_them(plugin_dir, tmp_path, ref, message):
    name = plugins.register_reference(ref, plugin_dir)
    spec = registry.get_spec(name)
    assert "failed to load" in spec.description and message in spec.description
    rows = _rows(tmp_path, [name, "naive_hash"], plugin_dir)
    mine = [r for r in rows if r.impl == name]
    assert mine and {r.status for r in mine} == {"error"}
    assert all(f"plugin {ref!r}" in r.error and message in r.error for r in mine)
    assert {r.status for r in rows if r.impl == "naive_hash"} == {"ok"}  # the sweep went on


@pytest.mark.parametrize(
    ("attr", "message"),
    [
        ("wrong_shape", "returned shape (1, 1, 2, 16), expected (B, T, H, D) = (1, 16, 2, 16)"),
        ("raises", "raised RuntimeError: kernel exploded"),
    ],
)
def test_plugins_that_misbehave_give_error_rows(plugin_dir, tmp_path, attr, message):
    name = plugins.register_reference(f"my_attention.py:{attr}", plugin_dir)
    rows = [r for r in _rows(tmp_path, [name], plugin_dir) if r.impl == name]
    assert rows and {r.status for r in rows} == {"error"}
    assert all(message in r.error and name in r.error for r in rows)


@pytest.mark.parametrize(
    ("ref", "message"),
    [("missing.py:fn", "file not found"), ("no_such_pkg_xyz.mod:fn", "import failed")],
)
def test_references_gone_by_registration_register_broken(plugin_dir, ref, message):
    """A suite naming these does not parse; should one vanish between parse and run, its
    registration still names it instead of raising."""
    name = plugins.register_reference(ref, plugin_dir)
    spec = registry.get_spec(name)
    assert "failed to load" in spec.description and message in spec.description


def test_a_plugin_for_other_devices_is_unavailable_here(plugin_dir, tmp_path):
    name = plugins.register_reference("my_attention.py:hash_attention", plugin_dir)
    impl = registry.get_spec(name).create()
    impl.fn.devices = ("cuda",)  # as if it declared CUDA only
    impl = plugins.FunctionImplementation(name, impl.fn, "hash")
    ok, reason = impl.available("cpu")
    assert not ok and "declares devices ['cuda']" in reason


def test_module_references_import_by_name(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    name = plugins.register_reference("my_attention:hash_attention")
    assert registry.get_spec(name).pattern == "hash"
    assert "failed" not in registry.get_spec(name).description


def test_entry_points_register_by_their_name(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    eps = [
        importlib.metadata.EntryPoint(
            "ep_hash", "my_attention:hash_attention", plugins.ENTRY_POINT_GROUP
        ),
        importlib.metadata.EntryPoint("ep_broken", "broken:thing", plugins.ENTRY_POINT_GROUP),
    ]
    seen_groups = []

    def fake_entry_points(group):
        seen_groups.append(group)
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    assert plugins.register_entry_points() == ["ep_hash", "ep_broken"]
    assert seen_groups == [plugins.ENTRY_POINT_GROUP]
    assert registry.get_spec("ep_hash").pattern == "hash"
    broken = registry.get_spec("ep_broken").description
    assert "'ep_broken' (broken:thing): import failed" in broken
