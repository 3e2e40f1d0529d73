"""Merging part CSVs: speedups joined across parts, duplicates and conflicts reported, cards
never mixed unless asked, grid order, meta."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from scfa_bench.errors import InputError
from scfa_bench.results.merge import merge, non_timing_cells, write_merged
from scfa_bench.results.meta import meta_path_for, read_meta
from scfa_bench.results.reader import read_results
from scfa_bench.results.row import row_cells

from ..results_factory import H100, default_meta, make_row, suite_rows, write_results

A100 = "NVIDIA A100-SXM4-80GB"


def split(rows: list[dict], parts: int, seed: int = 0) -> list[list[dict]]:
    """Rows dealt at random into `parts` lists, speedups blanked where the baseline row of the
    same seq_len and mode is in another list (as a shard without its baseline writes them)."""
    rng = random.Random(seed)
    owner = [rng.randrange(parts) for _ in rows]
    base_owner = {
        (r["seq_len"], r["mode"]): owner[i] for i, r in enumerate(rows) if r["impl"] == "sdpa_cudnn"
    }
    out: list[list[dict]] = [[] for _ in range(parts)]
    for i, row in enumerate(rows):
        row = dict(row)
        if base_owner[(row["seq_len"], row["mode"])] != owner[i]:
            row["speedup"] = ""
        out[owner[i]].append(row)
    return out


def write_parts(tmp_path: Path, parts: list[list[dict]], metas: list[dict] | None = None):
    return [
        write_results(tmp_path / f"part{i}.csv", rows, None if metas is None else metas[i])
        for i, rows in enumerate(parts)
    ]


def test_speedups_joined_across_parts(tmp_path: Path) -> None:
    rows = suite_rows()
    whole = read_results(write_results(tmp_path / "whole.csv", rows)).rows
    paths = write_parts(tmp_path, split(rows, 3))
    assert any(not r.speedup for p in paths for r in read_results(p).rows if r.impl != "sdpa_cudnn")
    merged = merge(paths)
    by_key = {r.key: r for r in merged.rows}
    assert len(by_key) == len(whole) == len(merged.rows)
    for row in whole:
        got = by_key[row.key]
        assert non_timing_cells(got) == non_timing_cells(row)
        assert got.speedup == pytest.approx(row.speedup, rel=1e-5)
    assert merged.report.duplicates == merged.report.conflicts == merged.report.missing == []


def test_order_follows_expected_keys_and_reports_missing(tmp_path: Path) -> None:
    rows = suite_rows(seq_lens=(1024, 2048), drop_rates=())
    whole = read_results(write_results(tmp_path / "whole.csv", rows)).rows
    expected = [r.key for r in whole]
    parts = split(rows, 2, seed=3)
    dropped = parts[1].pop()
    merged = merge(write_parts(tmp_path, parts), expected=expected)
    assert [r.key for r in merged.rows] == [
        k for k in expected if k in {r.key for r in merged.rows}
    ]
    assert len(merged.report.missing) == 1 and dropped["impl"] in merged.report.missing[0]
    assert len(merged.rows) == len(whole) - 1


def test_same_result_whatever_the_part_order(tmp_path: Path) -> None:
    paths = write_parts(tmp_path, split(suite_rows(), 4, seed=1))
    first = merge(paths).rows
    assert merge(list(reversed(paths))).rows == first


def test_duplicates_and_conflicts_reported(tmp_path: Path) -> None:
    base = make_row(impl="sdpa_cudnn", n_buckets="", density=1.0, ms_median=20.0)
    row = make_row()
    again = make_row(ms_median=11.0, ms_q20=10.9, ms_q80=11.1)  # same row, other timing
    failed = make_row(n_buckets=16, status="oom", error="CUDA out of memory", ms_median="")
    ok16 = make_row(n_buckets=16, density=1 / 16)
    paths = write_parts(tmp_path, [[base, row, failed], [again, ok16]])
    merged = merge(paths)
    assert len(merged.rows) == 3
    assert len(merged.report.duplicates) == 1 and "nb=8" in merged.report.duplicates[0]
    assert len(merged.report.conflicts) == 1
    conflict = merged.report.conflicts[0]
    assert "nb=16" in conflict and "status" in conflict and "kept the ok one" in conflict
    kept16 = next(r for r in merged.rows if r.n_buckets == 16)
    assert kept16.status == "ok" and kept16.speedup == pytest.approx(2.0)
    kept8 = next(r for r in merged.rows if r.n_buckets == 8)
    assert kept8.ms_median == 10.0  # the first of two agreeing rows


def test_different_cards_refused_unless_allowed(tmp_path: Path) -> None:
    rows = suite_rows(seq_lens=(1024,), drop_rates=())
    on_a100 = [dict(r, device=A100) for r in rows if r["impl"] != "sdpa_cudnn"]
    paths = write_parts(
        tmp_path,
        [rows, on_a100],
        [default_meta(), default_meta(device_name=A100)],
    )
    with pytest.raises(InputError) as info:
        merge(paths)
    message = str(info.value)
    assert H100 in message and A100 in message and "--allow-mixed-devices" in message
    assert "part0.csv" in message and "part1.csv" in message

    merged = merge(paths, allow_mixed_devices=True)
    assert len(merged.rows) == len(rows) + len(on_a100)  # same key on two cards: both kept
    assert merged.report.devices == sorted([H100, A100])
    assert merged.meta["device_name"].startswith("mixed: ")
    # the A100 rows have no A100 baseline: no speedup against the H100's
    assert all(r.speedup is None for r in merged.rows if r.device == A100)
    assert all(r.speedup is not None for r in merged.rows if r.device == H100)


def test_different_suites_or_suite_versions_refused(tmp_path: Path) -> None:
    a = write_results(tmp_path / "a.csv", [make_row()])
    b = write_results(tmp_path / "b.csv", [make_row(suite="other", n_buckets=4)])
    with pytest.raises(InputError, match="different suites"):
        merge([a, b])
    c = write_results(
        tmp_path / "c.csv", [make_row(n_buckets=4)], default_meta(suite_sha256="1" * 64)
    )
    with pytest.raises(InputError, match="suite_sha256"):
        merge([a, c])
    with pytest.raises(InputError, match="no part files"):
        merge([])
    with pytest.raises(InputError, match="not found"):
        merge([tmp_path / "missing.csv"])


def test_meta_and_written_files(tmp_path: Path) -> None:
    rows = suite_rows(seq_lens=(1024,), drop_rates=())
    parts = split(rows, 2, seed=5)
    metas = [
        default_meta(
            started="2026-11-26T10:00:00",
            finished="2026-11-26T10:05:00",
            hostname="n1",
            shard={"index": 0, "count": 2},
        ),
        default_meta(
            started="2026-11-26T09:59:00",
            finished="2026-11-26T10:07:00",
            hostname="n2",
            interrupted=True,
        ),
    ]
    paths = write_parts(tmp_path, parts, metas)
    merged = merge(paths)
    assert merged.meta["started"] == "2026-11-26T09:59:00"
    assert merged.meta["finished"] == "2026-11-26T10:07:00"
    assert merged.meta["interrupted"] is True
    assert merged.meta["hostname"] == ["n1", "n2"]
    assert "shard" not in merged.meta
    assert [p["csv"] for p in merged.meta["merged_from"]] == [str(p) for p in paths]
    assert merged.meta["merged_from"][0]["shard"] == {"index": 0, "count": 2}

    out = tmp_path / "out" / "run.csv"
    meta_path = write_merged(merged, out)
    assert meta_path == meta_path_for(out)
    assert [row_cells(r) for r in read_results(out).rows] == [row_cells(r) for r in merged.rows]
    assert read_meta(meta_path)["merge_report"]["duplicates"] == []


def test_telemetry_summarises_every_part(tmp_path: Path) -> None:
    """The merged meta's telemetry counts the throttled rows and extremes of all parts, not
    those of the first part (whose meta the merge starts from)."""
    rows = suite_rows(seq_lens=(1024, 2048), drop_rates=())
    clocks = [1980 - 15 * i for i in range(len(rows))]
    for i, (row, clock) in enumerate(zip(rows, clocks, strict=True)):
        row.update(
            sm_mhz_median=clock,
            sm_mhz_min=clock - 100,
            temp_c_max=40 + i,
            throttled="yes" if i % 3 == 0 else "no",
        )
    parts = split(rows, 3, seed=2)
    first_only = {"sampled": True, "throttled_rows": 0, "sm_mhz_min": 9999.0}
    metas = [default_meta(telemetry=first_only) for _ in parts]
    merged = merge(write_parts(tmp_path, parts, metas))
    telemetry = merged.meta["telemetry"]
    assert telemetry["throttled_rows"] == sum(1 for r in rows if r["throttled"] == "yes") > 0
    assert telemetry["sm_mhz_min"] == min(clocks) - 100
    assert telemetry["temp_c_max"] == 40 + len(rows) - 1
    assert telemetry["sm_mhz_median"] == pytest.approx(sorted(clocks)[len(clocks) // 2], abs=8)


def test_telemetry_of_parts_without_samples_is_kept(tmp_path: Path) -> None:
    note = {"sampled": False, "note": "no NVML"}
    parts = split(suite_rows(seq_lens=(1024,), drop_rates=()), 2, seed=4)
    merged = merge(write_parts(tmp_path, parts, [default_meta(telemetry=note)] * 2))
    assert merged.meta["telemetry"] == note
