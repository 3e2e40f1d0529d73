"""Do the tests catch plausible bugs? Plant each listed mutation, run the tests meant to catch it.

    python scripts/mutation_check.py                  # every mutation
    python scripts/mutation_check.py --only limits,csv  # mutations whose id contains a word
    python scripts/mutation_check.py --list           # the mutations and their tests

A developer tool, not part of CI (it runs the listed tests twice per mutation). The repository's
working tree (tracked and untracked, not ignored files) is copied once to a temporary folder;
each mutation replaces one exact piece of text in one file of that copy, the mutation's tests run
there (`python -m pytest -x` on the copy, with the copy first on PYTHONPATH), and the file is
restored before the next one. The working tree itself is never written.

Each mutation's tests first run on the unmutated copy (skip with --no-baseline): a test that
already fails would count any mutation as caught. Outcomes: `caught` (a test failed),
`ESCAPED` (every test passed), `no tests` (the selection collected nothing), `not applied`
(the original text is not in the file exactly once: the code moved on, update the entry) and
`baseline fails`. Prints a table and "caught N of M" over the mutations applied; exit code 0
iff every applied mutation was caught.

To add one, append a `Mutation` to MUTATIONS: the file, the exact original text (it must occur
once), its replacement, and the pytest arguments selecting the tests that should catch it
(files, node ids, `-k` expressions). `alternatives` lists other (original, replacement) pairs
for the same bug, tried in order when the code has been rewritten.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Mutation:
    id: str
    path: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    alternatives: tuple[tuple[str, str], ...] = field(default=())


MUTATIONS: list[Mutation] = [
    Mutation(
        "limits-slowest",
        "scfa_bench/results/limits.py",
        "min(best.get(key, r.ms_median), r.ms_median)",
        "max(best.get(key, r.ms_median), r.ms_median)",
        ("tests/bench/results", "tests/bench/run/test_profiling_run.py", "-k", "limit"),
    ),
    Mutation(
        "forward-tolerance-10x",
        "kernels/tolerances.py",
        'forward=Bound(\n            5e-3,\n            "P is rounded to float16',
        'forward=Bound(\n            5e-2,\n            "P is rounded to float16',
        ("tests/kernels/test_tolerances.py", "tests/bench/measure/test_correctness.py"),
    ),
    Mutation(
        "plan-block-m-n-swapped",
        "kernels/plan.py",
        "query_tile_ranges_kernel, plan.queries, plan.keys, 3, block_m, block_n, work, tile=",
        "query_tile_ranges_kernel, plan.queries, plan.keys, 3, block_n, block_m, work, tile=",
        ("tests/kernels/test_tile_shapes.py", "tests/kernels/test_plan.py", "-k", "range or tile"),
    ),
    Mutation(
        "resume-remeasures-failed-rows",
        "scfa_bench/results/resume.py",
        "return {r.key for r in results.rows}",
        'return {r.key for r in results.rows if r.status == "ok"}',
        (
            "tests/bench/results/test_resume_statuses.py",
            "tests/bench/run/test_loop.py",
            "tests/bench/run/test_robust_files.py",
            "-k",
            "resume",
        ),
    ),
    Mutation(
        "speedup-inverted",
        "scfa_bench/results/speedup.py",
        "return base.ms_median / row.ms_median",
        "return row.ms_median / base.ms_median",
        ("tests/bench/results/test_speedup.py",),
    ),
    Mutation(
        "density-over-all-pairs",
        "scfa_bench/measure/metrics.py",
        "return seq_len * (seq_len + 1) // 2",
        "return seq_len * seq_len",
        ("tests/bench/measure/test_metrics.py",),
    ),
    Mutation(
        "reference-causal-off-by-one",
        "kernels/reference.py",
        "return keys[None, :] <= rows[:, None]",
        "return keys[None, :] < rows[:, None]",
        ("tests/kernels/test_reference.py",),
    ),
    Mutation(
        "stranded-queries-nan",
        "kernels/_triton_fwd.py",
        "    out = acc / tl.where(seen, l_i, 1.0)[:, None]\n    if MAX_PIECES > 1:",
        "    out = acc / l_i[:, None]\n    if MAX_PIECES > 1:",
        (
            "tests/kernels/test_forward.py",
            "tests/kernels/test_backward.py",
            "tests/kernels/test_split.py",
            "-k",
            "stranded",
        ),
    ),
    Mutation(
        "gate-slowdown-flipped",
        "scfa_bench/analysis/stats.py",
        "    if ratio > factor:\n        return Change.REGRESSION",
        "    if ratio < factor:\n        return Change.REGRESSION",
        ("tests/bench/analysis/test_stats.py", "tests/bench/analysis/test_gate.py"),
    ),
    Mutation(
        "csv-drops-last-column",
        "scfa_bench/results/writer.py",
        "return csv_line(cells[c] for c in COLUMNS)",
        "return csv_line(cells[c] for c in COLUMNS[:-1])",
        ("tests/bench/results/test_reader.py", "tests/bench/results/test_model_rows.py"),
    ),
    Mutation(
        "lsh-argmax-ties-to-last",
        "kernels/_triton_lsh.py",
        "first = tl.min(tl.where(values == best[:, None], cols[None, :], _NO_INDEX), axis=1)",
        "first = tl.max(tl.where(values == best[:, None], cols[None, :], -1), axis=1)",
        ("tests/kernels/test_lsh.py", "-k", "ties"),
    ),
    Mutation(
        "suite-name-prefix-match",
        "scfa_bench/suite/parse.py",
        "NAME_PATTERN.fullmatch(name)",
        "NAME_PATTERN.match(name)",
        ("tests/bench/suite/test_parse.py",),
        # With `match`, an anchor-free pattern accepts any name that starts well.
        alternatives=(
            (
                '_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")',
                '_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")',
            ),
        ),
    ),
]

REPO = Path(__file__).resolve().parents[1]


def copy_worktree(repo: Path, dest: Path) -> None:
    """Tracked and untracked (not ignored) files of `repo`, as they are now, into `dest`; then
    the `scfa_kernels` alias of `kernels/` (the package installs it under that name)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        src = repo / rel
        if not src.is_file():  # deleted in the working tree
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    alias = dest / ".mutation_pp" / "scfa_kernels"
    alias.parent.mkdir()
    alias.symlink_to(dest / "kernels", target_is_directory=True)


def _environment(copy: Path) -> dict[str, str]:
    """The copy first on PYTHONPATH; entries pointing into the original tree are dropped."""
    kept = [
        p
        for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
        if p and not Path(p).resolve().is_relative_to(REPO)
    ]
    path = os.pathsep.join([str(copy / ".mutation_pp"), str(copy), *kept])
    return {**os.environ, "PYTHONPATH": path}


def run_tests(copy: Path, tests: tuple[str, ...], extra: list[str], timeout: float) -> int:
    """pytest's exit code (1: a test failed, 5: nothing collected); -m "" runs every tier."""
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", ""]
    try:
        done = subprocess.run(
            [*command, *extra, *tests],
            cwd=copy,
            env=_environment(copy),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return -1
    return done.returncode


def edit_for(mutation: Mutation, text: str) -> tuple[str, str] | None:
    """The first (original, replacement) pair whose original occurs exactly once in `text`."""
    for original, replacement in (
        (mutation.original, mutation.replacement),
        *mutation.alternatives,
    ):
        if text.count(original) == 1:
            return original, replacement
    return None


def check(mutation: Mutation, copy: Path, extra: list[str], timeout: float, baseline: bool) -> str:
    target = copy / mutation.path
    if not target.is_file():
        return "not applied"
    text = target.read_text(encoding="utf-8")
    edit = edit_for(mutation, text)
    if edit is None:
        return "not applied"
    if baseline:
        code = run_tests(copy, mutation.tests, extra, timeout)
        if code == 5:
            return "no tests"
        if code != 0:
            return "baseline fails"
    target.write_text(text.replace(*edit), encoding="utf-8")
    try:
        code = run_tests(copy, mutation.tests, extra, timeout)
    finally:
        target.write_text(text, encoding="utf-8")
    return {0: "ESCAPED", 1: "caught", 5: "no tests", -1: "timed out"}.get(code, f"pytest {code}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated words of mutation ids")
    parser.add_argument("--list", action="store_true", help="print the mutations and stop")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated runs")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per pytest run")
    parser.add_argument("--pytest-args", default="", help='extra pytest options, e.g. "-n 2"')
    args = parser.parse_args(argv)
    words = [w for w in args.only.split(",") if w]
    chosen = [m for m in MUTATIONS if not words or any(w in m.id for w in words)]
    if not chosen:
        parser.error(f"--only {args.only!r} matches no mutation id")
    if args.list:
        for m in chosen:
            print(f"{m.id:32s} {m.path:38s} {' '.join(m.tests)}")
        return 0
    results: list[tuple[Mutation, str, float]] = []
    with tempfile.TemporaryDirectory(prefix="mutation_check_") as tmp:
        copy = Path(tmp)
        copy_worktree(REPO, copy)
        for m in chosen:
            start = time.perf_counter()
            outcome = check(m, copy, args.pytest_args.split(), args.timeout, not args.no_baseline)
            results.append((m, outcome, time.perf_counter() - start))
            print(f"{m.id:32s} {outcome:15s} {results[-1][2]:7.1f} s", flush=True)
    applied = [r for r in results if r[1] != "not applied"]
    caught = sum(1 for r in applied if r[1] == "caught")
    print(f"\n{'mutation':32s} {'file':38s} {'outcome':15s} seconds")
    for m, outcome, seconds in results:
        print(f"{m.id:32s} {m.path:38s} {outcome:15s} {seconds:7.1f}")
    skipped = len(results) - len(applied)
    print(f"\ncaught {caught} of {len(applied)}" + (f" ({skipped} not applied)" if skipped else ""))
    return 0 if caught == len(applied) else 1


if __name__ == "__main__":
    sys.exit(main())
