"""GPU check of the kernels against the dense reference: ``python -m scfa_kernels.verify``.

For each pattern, dtype, head dim and sequence length it runs the kernel forward and backward
(random upstream gradient) and compares with `scfa_kernels.reference` computed in float32
from the SAME rounded inputs, so only the kernel's own error is measured:

* out: every row up to --full-max-t, else a random sample of query rows (R x T memory);
* dq, dk, dv: every row, from the chunked exact formulas (O(chunk x T) memory);
* no NaN/inf anywhere; stranded queries (no allowed key) output exactly 0 and get dq = 0.

The error of a tensor is `scfa_kernels.tolerances.max_rel_err` (the largest norm-relative error
||got - want|| / ||want|| over (batch, head)), bounded by `tolerances.TOLERANCES`. Exit code 0
iff every case passes; 2 when there is no CUDA device (``--cpu`` runs a tiny case through
Triton's interpreter instead).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from . import hash_sparse_attention, lsh_buckets, qk_sparse_attention, reference
from .tolerances import TOLERANCES, Tolerance, max_rel_err

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


PATTERNS = ("hash-1", "hash-8", "lsh-8", "qk-0.5")
QUICK_PATTERNS = ("hash-8", "qk-0.5")


@dataclass(frozen=True)
class Case:
    """One comparison: pattern 'hash' (random buckets), 'lsh' (angular LSH of q, k) or 'qk'."""

    pattern: str
    sparsity: float  # n_buckets for hash/lsh, drop rate for qk
    dtype: str
    head_dim: int
    seq_len: int
    batch: int
    heads: int

    @property
    def label(self) -> str:
        return f"nb={int(self.sparsity)}" if self.pattern != "qk" else f"p={self.sparsity:g}"


@dataclass(frozen=True)
class CaseResult:
    case: Case
    tolerance: Tolerance
    rows_checked: int = 0  # query rows whose output was compared
    stranded_rows: int = 0  # stranded (batch, row, head) triples checked for exact zeros
    err_out: float = math.nan
    err_dq: float = math.nan
    err_dk: float = math.nan
    err_dv: float = math.nan
    problems: tuple[str, ...] = field(default_factory=tuple)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        errs_ok = self.err_out <= self.tolerance.out and all(
            e <= self.tolerance.grad for e in (self.err_dq, self.err_dk, self.err_dv)
        )
        return errs_ok and not self.problems  # NaN errors compare False: they fail


def parse_pattern(spec: str) -> tuple[str, float]:
    """'hash-8' -> ('hash', 8), 'lsh-8' -> ('lsh', 8), 'qk-0.5' -> ('qk', 0.5)."""
    kind, _, value = spec.partition("-")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if kind not in ("hash", "lsh", "qk") or not math.isfinite(number):
        raise ValueError(f"--patterns: expected hash-NB, lsh-NB or qk-P, got {spec!r}")
    if kind == "qk" and not 0.0 <= number < 1.0:
        raise ValueError(f"--patterns: drop rate must be in [0, 1), got {spec!r}")
    if kind != "qk" and (number < 1 or number != int(number) or (kind == "lsh" and number % 2)):
        raise ValueError(f"--patterns: bucket count must be a positive integer, got {spec!r}")
    return kind, number


def build_cases(
    patterns: Sequence[str],
    dtypes: Sequence[str],
    head_dims: Sequence[int],
    seq_lens: Sequence[int],
    full_max_t: int,
) -> list[Case]:
    cases = []
    for spec in patterns:
        kind, sparsity = parse_pattern(spec)
        for dtype in dtypes:
            for head_dim in head_dims:
                for seq_len in seq_lens:
                    # Long sequences: fewer batch entries, more heads, same work order.
                    batch, heads = (2, 4) if seq_len <= full_max_t else (1, 8)
                    cases.append(Case(kind, sparsity, dtype, head_dim, seq_len, batch, heads))
    return cases


CPU_PATTERNS = ("hash-3", "qk-0.5")


def _small_cases(
    patterns: Sequence[str],
    dtypes: Sequence[str],
    head_dims: Sequence[int],
    seq_lens: Sequence[int],
) -> list[Case]:
    """The --cpu set: tiny shapes (B=1, H=2) the interpreter runs in seconds."""
    return [
        Case(kind, sparsity, dtype, head_dim, seq_len, 1, 2)
        for kind, sparsity in map(parse_pattern, patterns)
        for dtype in dtypes
        for head_dim in head_dims
        for seq_len in seq_lens
    ]


# ---------------------------------------------------------------- one case


def _inputs(case: Case, device: str, seed: int):
    gen = torch.Generator(device=device).manual_seed(seed)
    shape = (case.batch, case.seq_len, case.heads, case.head_dim)
    dtype = DTYPES[case.dtype]
    q, k, v, do = (torch.randn(shape, generator=gen, device=device, dtype=dtype) for _ in range(4))
    pattern_shape = shape[:3]
    if case.pattern == "hash":
        nb = int(case.sparsity)
        a, c = (torch.randint(0, nb, pattern_shape, generator=gen, device=device) for _ in range(2))
    elif case.pattern == "lsh":
        # q and k hashed with the same rotations, as a model would.
        a = lsh_buckets(q, int(case.sparsity), generator=torch.Generator(device).manual_seed(seed))
        c = lsh_buckets(k, int(case.sparsity), generator=torch.Generator(device).manual_seed(seed))
    else:
        a, c = (
            torch.rand(pattern_shape, generator=gen, device=device) >= case.sparsity
            for _ in range(2)
        )
    return q, k, v, do, a, c


def run_case(case: Case, device: str, sample_rows: int, full_max_t: int, seed: int) -> CaseResult:
    started = time.perf_counter()
    tolerance = TOLERANCES[DTYPES[case.dtype]]
    q, k, v, do, a, c = _inputs(case, device, seed)
    if case.pattern == "qk":
        kernel, mask_of = qk_sparse_attention, reference.qk_mask
        grads_of = reference.qk_sparse_attention_grads
    else:
        kernel, mask_of = hash_sparse_attention, reference.hash_mask
        grads_of = reference.hash_sparse_attention_grads

    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    # Hash ids lie in [0, n_buckets): passing it keeps the call free of host syncs.
    extra = {} if case.pattern == "qk" else {"n_buckets": int(case.sparsity)}
    out = kernel(*leaves, a, c, **extra)
    out.backward(do)
    dq, dk, dv = (x.grad for x in leaves)
    assert dq is not None and dk is not None and dv is not None

    t = case.seq_len
    if t <= full_max_t or sample_rows >= t:
        rows = torch.arange(t, device=device)
    else:
        gen = torch.Generator(device="cpu").manual_seed(seed + 1)
        picked = torch.randperm(t - 2, generator=gen)[: sample_rows - 2] + 1
        rows = torch.cat([torch.tensor([0, t - 1]), picked]).sort().values.to(device)

    qf, kf, vf, dof = (x.float() for x in (q, k, v, do))
    mask = mask_of(a, c, rows)
    want_out = reference.masked_attention(qf[:, rows], kf, vf, mask)
    want_dq, want_dk, want_dv = grads_of(qf, kf, vf, a, c, dof)

    problems = []
    for name, got in (("out", out), ("dq", dq), ("dk", dk), ("dv", dv)):
        if got.dtype != q.dtype or got.shape != q.shape:
            problems.append(f"{name} is {got.dtype} {tuple(got.shape)}")
        if not torch.isfinite(got).all():
            problems.append(f"{name} has NaN/inf")
    stranded = ~mask.any(dim=-1).permute(0, 2, 1)  # (B, R, H)
    if torch.count_nonzero(out[:, rows][stranded]):
        problems.append("stranded rows of out not exactly 0")
    if torch.count_nonzero(dq[:, rows][stranded]):
        problems.append("stranded rows of dq not exactly 0")

    return CaseResult(
        case=case,
        tolerance=tolerance,
        rows_checked=int(rows.numel()),
        stranded_rows=int(stranded.sum()),
        err_out=max_rel_err(out[:, rows].float(), want_out),
        err_dq=max_rel_err(dq.float(), want_dq),
        err_dk=max_rel_err(dk.float(), want_dk),
        err_dv=max_rel_err(dv.float(), want_dv),
        problems=tuple(problems),
        seconds=time.perf_counter() - started,
    )


def run_case_safely(case: Case, device: str, **kwargs) -> CaseResult:
    """An exception (OOM, compile error) is a FAIL of that case, not the end of the run."""
    try:
        return run_case(case, device, **kwargs)
    except Exception as exc:  # reported in the table, the run goes on
        if device == "cuda":
            torch.cuda.empty_cache()
        return CaseResult(
            case, TOLERANCES[DTYPES[case.dtype]], problems=(f"{type(exc).__name__}: {exc}",)
        )


# ---------------------------------------------------------------- environment and output


def environment(device: str) -> dict[str, str]:
    import triton

    if device == "cuda":
        major, minor = torch.cuda.get_device_capability()
        card = f"{torch.cuda.get_device_name()} (sm_{major}{minor})"
    else:
        card = f"cpu via Triton interpreter ({platform.processor() or platform.machine()})"
    return {
        "device": card,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "cuda": str(torch.version.cuda),
        "python": platform.python_version(),
    }


# Table columns, space-separated (the tolerance column is "tol_out/grad").
_COLUMNS = "pattern dtype D T BxH nb/p rows stranded out dq dk dv tol_out/grad result"


def _fmt(err: float) -> str:
    return "-" if math.isnan(err) else f"{err:.2e}"


def print_report(results: Sequence[CaseResult], env: dict[str, str], elapsed: float) -> None:
    from rich.console import Console
    from rich.table import Table

    # Wide enough for every column even when stdout is a file or a CI log.
    console = Console(width=max(Console().width, 150))
    console.print(
        f"[bold]scfa_kernels.verify[/] on {env['device']}: torch {env['torch']}, "
        f"triton {env['triton']}, CUDA {env['cuda']}"
    )
    tols = ", ".join(
        f"{name} out<={TOLERANCES[dtype].out:g} grads<={TOLERANCES[dtype].grad:g}"
        for name, dtype in DTYPES.items()
    )
    console.print(f"error = max over (batch, head) of ||got-ref||/||ref||; bounds: {tols}")
    table = Table(show_lines=False)
    for column in _COLUMNS.split():
        table.add_column(column, justify="left" if column in ("pattern", "result") else "right")
    for r in results:
        c = r.case
        verdict = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
        if r.problems:
            verdict += " " + "; ".join(r.problems)[:120]
        case_cells = [c.pattern, c.dtype, str(c.head_dim), str(c.seq_len)]
        case_cells += [f"{c.batch}x{c.heads}", c.label, str(r.rows_checked), str(r.stranded_rows)]
        error_cells = [_fmt(e) for e in (r.err_out, r.err_dq, r.err_dk, r.err_dv)]
        tolerance = f"{r.tolerance.out:g}/{r.tolerance.grad:g}"
        table.add_row(*case_cells, *error_cells, tolerance, verdict)
    console.print(table)
    failed = sum(not r.passed for r in results)
    summary = f"{len(results) - failed}/{len(results)} cases passed in {elapsed:.1f} s"
    console.print(f"[bold {'green' if not failed else 'red'}]{summary}[/]")


def write_json(path: str, results: Sequence[CaseResult], env: dict[str, str]) -> None:
    def row(r: CaseResult) -> dict:
        data = asdict(r)
        data["passed"] = r.passed
        return data

    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"environment": env, "results": [row(r) for r in results]}, handle, indent=2)


# ---------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m scfa_kernels.verify",
        description="Compare the SCFA kernels with the dense reference on CUDA; "
        "exit 0 iff every case passes.",
    )
    parser.add_argument("--quick", action="store_true", help="T 1024/2048, patterns hash-8, qk-0.5")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=None, metavar="T")
    parser.add_argument(
        "--head-dims", type=int, nargs="+", default=None, metavar="D", help="default 64 128"
    )
    parser.add_argument(
        "--dtypes", nargs="+", default=None, choices=sorted(DTYPES), help="default fp16 bf16"
    )
    parser.add_argument(
        "--patterns", nargs="+", default=None, metavar="SPEC", help="hash-NB, lsh-NB or qk-P"
    )
    parser.add_argument(
        "--sample-rows", type=int, default=256, help="query rows compared for out at long T"
    )
    parser.add_argument(
        "--full-max-t", type=int, default=2048, help="up to this T every row of out is compared"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="PATH", help="also write results here")
    parser.add_argument(
        "--cpu", action="store_true", help="no GPU: a tiny fp16/fp32 run through the interpreter"
    )
    return parser


def _check_args(args: argparse.Namespace) -> None:
    for name, values in (
        ("--seq-lens", args.seq_lens or []),
        ("--head-dims", args.head_dims or []),
    ):
        if any(v < 1 for v in values):
            raise ValueError(f"{name}: expected positive integers, got {values}")
    if args.sample_rows < 2:
        raise ValueError(f"--sample-rows: expected >= 2, got {args.sample_rows}")
    for spec in args.patterns or []:
        parse_pattern(spec)


def _rerun_under_interpreter(argv: Sequence[str]) -> int:
    """TRITON_INTERPRET must be set before triton is imported: run a fresh interpreter."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    command = [sys.executable, "-m", "scfa_kernels.verify", *argv]
    return subprocess.call(command, env=env)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        _check_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.cpu:
        if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
            return _rerun_under_interpreter(argv)
        if "bf16" in (args.dtypes or []):
            print(
                "error: --dtypes bf16 cannot run on the CPU (Triton interpreter)", file=sys.stderr
            )
            return 2
        device = "cpu"
        cases = _small_cases(
            args.patterns or CPU_PATTERNS,
            args.dtypes or ["fp16", "fp32"],
            args.head_dims or [16, 64],
            args.seq_lens or [64, 130],
        )
    else:
        if not torch.cuda.is_available():
            print(
                "No CUDA device found: scfa_kernels.verify checks the kernels on a GPU.\n"
                "Run it on a CUDA machine, or pass --cpu for a tiny run through Triton's "
                "interpreter (float16/float32 only).",
                file=sys.stderr,
            )
            return 2
        device = "cuda"
        seq_lens = args.seq_lens or ([1024, 2048] if args.quick else [1024, 2048, 4096, 8192])
        patterns = args.patterns or (QUICK_PATTERNS if args.quick else PATTERNS)
        cases = build_cases(
            patterns,
            args.dtypes or ["fp16", "bf16"],
            args.head_dims or [64, 128],
            seq_lens,
            args.full_max_t,
        )
        # The reference must be true float32, not TF32.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    env = environment(device)
    started = time.perf_counter()
    results = [
        run_case_safely(
            case,
            device,
            sample_rows=args.sample_rows,
            full_max_t=args.full_max_t,
            seed=args.seed + i,
        )
        for i, case in enumerate(cases)
    ]
    print_report(results, env, time.perf_counter() - started)
    if args.json:
        write_json(args.json, results, env)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
