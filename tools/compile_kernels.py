"""Compile every kernel for NVIDIA GPUs without a GPU: ``python tools/compile_kernels.py``.

Triton's interpreter (what the CPU tests run) does not type-check a kernel the way the
compiler does, so a kernel can pass every CPU test and still fail to compile on a GPU. This
script runs the real compiler (Triton IR -> PTX -> cubin, with the ptxas Triton ships) for
sm_80 and sm_90 on each kernel, with the tile configurations `config.py` uses and the
argument types the launches pass. It needs no CUDA device; it must run without
TRITON_INTERPRET (the tests call it in a subprocess). Exit code 0 iff everything compiles.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path

# Pointer element types by argument name; other arguments are i32 scalars unless listed.
_POINTERS = {
    "Q": "*bf16",
    "K": "*bf16",
    "V": "*bf16",
    "Out": "*bf16",
    "dOut": "*bf16",
    "dQ": "*bf16",
    "dK": "*bf16",
    "dV": "*bf16",
    "LSE": "*fp32",
    "Delta": "*fp32",
    "q_perm": "*i32",
    "k_perm": "*i32",
    "q_bucket_sorted": "*i32",
    "k_bucket_sorted": "*i32",
    "tile_start": "*i32",
    "tile_n_diag": "*i32",
    "tile_n_full": "*i32",
    "tile_end": "*i32",
    "QSrc": "*i64",
    "KSrc": "*i32",
    "Hist": "*i32",
    "Unmatched": "*i32",
    "Perm": "*i32",
    "SortedBucket": "*i32",
    "Composite": "*i64",
    "QComp": "*i64",
    "KComp": "*i64",
    "QBucket": "*i32",
    "KBucket": "*i32",
    "Start": "*i32",
    "NDiag": "*i32",
    "NFull": "*i32",
    "End": "*i32",
    "OutPart": "*fp32",
    "LSEPart": "*fp32",
    "dKAcc": "*fp32",
    "dVAcc": "*fp32",
    "dQAcc": "*fp32",
    "Acc": "*fp32",
    "AccB": "*fp32",
    "perm": "*i32",
    "Work": "*i32",
}
_FLOATS = {"qk_scale", "sm_scale"}
# Shared memory one block may use, per architecture (CUDA C Programming Guide, compute
# capabilities table): 163 KB on sm_80 (A100), 227 KB on sm_90 (H100/H200). Triton reports
# a kernel over it only when it loads it on a GPU; here it fails at compile time.
SHARED_MEMORY_LIMIT = {80: 163 * 1024, 90: 227 * 1024}


# Buffers that only split launches (MAX_PIECES > 1) or the pair copy (PAIRS = 2) use; the
# launches pass None otherwise, which Triton compiles as a constexpr.
_SPLIT_ONLY = ("OutPart", "LSEPart", "Work", "dKAcc", "dVAcc", "dQAcc")
_PAIR_ONLY = ("AccB", "DstB")


def _with_unused_none(kernel, constexprs: dict) -> dict:
    """`constexprs` plus None for the buffers the launches leave out in this configuration."""
    unused = []
    if constexprs.get("MAX_PIECES") == 1:
        unused += _SPLIT_ONLY
    if constexprs.get("PAIRS") == 1:
        unused += _PAIR_ONLY
    if constexprs.get("COUNT_WORK") is False:
        unused.append("Work")
    return constexprs | {name: None for name in unused if name in kernel.arg_names}


def _signature(kernel, constexprs: dict, pointers: dict[str, str]) -> dict[str, str]:
    types = {}
    for name in kernel.arg_names:
        if name in constexprs:
            types[name] = "constexpr"
        elif name in pointers:
            types[name] = pointers[name]
        elif name in _FLOATS:
            types[name] = "fp32"
        else:
            types[name] = "i32"
    return types


# Per tile-table entry: its case label, the pointer type and head dim compiled, tl.dot's
# input precision.
_TABLE_CASES = {
    "large_buckets": ("bf16 d64 large buckets", "*bf16", 64, None),
    "medium_buckets": ("bf16 d64 medium buckets", "*bf16", 64, None),
    "small_buckets": ("bf16 d64 small buckets", "*bf16", 64, None),
    "head_128": ("fp16 d128", "*fp16", 128, None),
    "float32": ("fp32 d64", "*fp32", 64, "ieee"),
}


def _cases(arch: int):
    """(label, kernel, constexprs, pointer types, options) of every kernel to compile for
    sm_<arch>, with the tile table `config.py` picks for that compute capability."""
    from scfa_kernels import _triton_bwd, _triton_fwd, _triton_plan, _triton_sort, config

    table = config.TILE_TABLES[arch // 10]
    attention_configs = {
        label: (ptr, head_dim, getattr(table, name), precision)
        for name, (label, ptr, head_dim, precision) in _TABLE_CASES.items()
    }
    for label, (ptr, head_dim, cfg, precision) in attention_configs.items():
        pointers = dict(_POINTERS)
        for name in ("Q", "K", "V", "Out", "dOut", "dQ", "dK", "dV", "Dst", "DstB"):
            pointers[name] = ptr
        # Whole ranges (large grids) and ranges cut into pieces (small grids).
        splits = (config.NO_SPLIT, cfg.fwd_split, cfg.dkdv_split, cfg.dq_split)
        for split in dict.fromkeys(splits):
            pieces = {"MAX_PIECES": split.max_pieces, "MIN_TILES": split.min_tiles}
            tag = f"{label}, {split.max_pieces} pieces"
            for kernel, launch in (
                (_triton_fwd.sparse_attention_fwd_kernel, cfg.fwd),
                (_triton_bwd.sparse_attention_bwd_dkdv_kernel, cfg.dkdv),
                (_triton_bwd.sparse_attention_bwd_dq_kernel, cfg.dq),
            ):
                constexprs = {
                    "BLOCK_M": launch.block_m,
                    "BLOCK_N": launch.block_n,
                    "HEAD_DIM": head_dim,
                    "DOT_PRECISION": precision,
                    **pieces,
                }
                options = {"num_warps": launch.num_warps, "num_stages": launch.num_stages}
                yield f"{kernel.fn.__name__} ({tag})", kernel, constexprs, pointers, options
            if split.max_pieces == 1:
                continue
            kernel = _triton_fwd.sparse_attention_fwd_combine_kernel
            constexprs = {"BLOCK_M": cfg.fwd.block_m, "BLOCK_N": cfg.fwd.block_n}
            constexprs |= {"HEAD_DIM": head_dim, **pieces}
            yield f"{kernel.fn.__name__} ({tag})", kernel, constexprs, pointers, {}
            kernel = _triton_bwd.sparse_attention_bwd_store_rows_kernel
            for rows, range_block, pairs in (
                (cfg.dkdv.block_n, cfg.dkdv.block_m, 2),
                (cfg.dq.block_m, cfg.dq.block_n, 1),
            ):
                constexprs = {"ROWS": rows, "RANGE_BLOCK": range_block, "HEAD_DIM": head_dim}
                constexprs |= {"PAIRS": pairs, **pieces}
                yield (
                    f"{kernel.fn.__name__} ({tag}, pairs={pairs})",
                    kernel,
                    constexprs,
                    pointers,
                    {},
                )
        constexprs = {"BLOCK_M": cfg.delta_block_m, "HEAD_DIM": head_dim}
        kernel = _triton_bwd.attention_bwd_delta_kernel
        yield f"{kernel.fn.__name__} ({label})", kernel, constexprs, pointers, {}

    for nb, rank_by_sort, chunk in ((8, False, 1024), (64, True, 1024), (2, False, 1024)):
        for kernel in (_triton_sort.bucket_histogram_kernel, _triton_sort.bucket_scatter_kernel):
            constexprs = {"FROM_KEEP": nb == 2, "NB": nb, "CHUNK": chunk}
            if kernel is _triton_sort.bucket_scatter_kernel:
                constexprs |= {"CHUNK_GROUP": 64, "RANK_BY_SORT": rank_by_sort}
            pointers = dict(_POINTERS)
            if nb == 2:
                pointers |= {"QSrc": "*i1", "KSrc": "*i1"}
            label = f"nb={nb}, rank_by_sort={rank_by_sort}"
            yield f"{kernel.fn.__name__} ({label})", kernel, constexprs, pointers, {"num_warps": 4}

    for kernel in (_triton_plan.query_tile_ranges_kernel, _triton_plan.key_tile_ranges_kernel):
        for count_work in (False, True):
            constexprs = {"BLOCK_M": 64, "BLOCK_N": 128, "GROUP": 128, "STEPS": 15}
            constexprs["COUNT_WORK"] = count_work
            label = f"{kernel.fn.__name__} (count_work={count_work})"
            yield label, kernel, constexprs, _POINTERS, {}


_DROPPED = re.compile(r"^(\.loc|\.file|//|\$L__tmp\d+:$)")
_PARAM = re.compile(r"\b[A-Za-z_$][\w$]*_param_\d+\b")
_ENTRY = re.compile(r"(\.entry|\.func)\s+[A-Za-z_$][\w$]*")
_COMMENT = re.compile(r"\s*//.*$")
_REGISTER = re.compile(r"(%[a-z]+)\d+")
_BLOCK = re.compile(r"^\$L__BB\w+:$")


def normalise_ptx(ptx: str) -> list[str]:
    """PTX lines without what does not run: `.loc`/`.file` line info and their `$L__tmp`
    labels, comments, debug sections, the kernel's name and parameter names (every parameter
    reads as `param`), and the parameter declarations themselves (a buffer passed as None
    drops one)."""
    lines, in_debug = [], False
    for line in ptx.splitlines():
        stripped = _COMMENT.sub("", line.strip())
        if stripped.startswith(".section") and ".debug" in stripped:
            in_debug = True
        if in_debug:
            in_debug = stripped != "}"
            continue
        if not stripped or _DROPPED.match(stripped) or stripped.startswith(".param"):
            continue
        stripped = _ENTRY.sub(r"\1 kernel", stripped)
        lines.append(_PARAM.sub("param", stripped).rstrip(","))
    return lines


def block_instructions(lines: list[str]) -> list[tuple[str, Counter]]:
    """Per basic block (split at `$L__BB` labels): its label and the multiset of its
    instructions with register numbers erased. Equal lists mean the code differs only in
    register names and the order of instructions inside blocks."""
    blocks: list[tuple[str, Counter]] = [("entry", Counter())]
    for line in lines:
        if _BLOCK.match(line):
            blocks.append((line, Counter()))
        else:
            blocks[-1][1][_REGISTER.sub(r"\1", line)] += 1
    return blocks


def compare_ptx(before: str, after: str) -> str:
    """'same', 'reordered' (same instructions per basic block, other order or registers)
    or a short account of the difference."""
    a, b = normalise_ptx(before), normalise_ptx(after)
    if a == b:
        return f"same ({len(a)} lines)"
    blocks_a, blocks_b = block_instructions(a), block_instructions(b)
    if blocks_a == blocks_b:
        return f"reordered ({len(a)} lines, {len(blocks_a)} blocks, same instructions per block)"
    count_a = sum(sum(c.values()) for _, c in blocks_a)
    count_b = sum(sum(c.values()) for _, c in blocks_b)
    return f"DIFFERS ({len(blocks_a)} -> {len(blocks_b)} blocks, {count_a} -> {count_b} lines)"


def compare_dumps(before: Path, after: Path) -> list[str]:
    """One line per PTX file of `before`: how its namesake under `after` compares."""
    report = []
    for old in sorted(before.rglob("*.ptx")):
        name = old.relative_to(before)
        new = after / name
        verdict = compare_ptx(old.read_text(), new.read_text()) if new.exists() else "missing"
        report.append(f"{name}: {verdict}")
    return report


def case_file_stem(label: str) -> str:
    """A file name for a case label: letters, digits, '=', '.', '-' kept, the rest '_'."""
    return re.sub(r"[^A-Za-z0-9=.-]+", "_", label).strip("_")


def dump_kernel(root: Path, arch: int, label: str, asm: dict) -> None:
    """Write a compiled kernel's PTX and TTGIR under root/sm_<arch>/."""
    folder = root / f"sm_{arch}"
    folder.mkdir(parents=True, exist_ok=True)
    stem = case_file_stem(label)
    (folder / f"{stem}.ptx").write_text(asm["ptx"])
    (folder / f"{stem}.ttgir").write_text(str(asm["ttgir"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, nargs="+", default=[80, 90])
    parser.add_argument("--dump", type=Path, help="write each kernel's PTX and TTGIR here")
    parser.add_argument(
        "--compare",
        type=Path,
        nargs=2,
        metavar=("BEFORE", "AFTER"),
        help="compare two --dump folders (normalised PTX) instead of compiling",
    )
    args = parser.parse_args(argv)
    if args.compare:
        report = compare_dumps(*args.compare)
        print("\n".join(report))
        equal = all(": same" in line or ": reordered" in line for line in report)
        return 0 if report and equal else 1
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("error: unset TRITON_INTERPRET: the interpreter does not compile", file=sys.stderr)
        return 2
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    failed = 0
    for arch in args.archs:
        target = GPUTarget("cuda", arch, 32)
        for label, kernel, constexprs, pointers, options in _cases(arch):
            started = time.perf_counter()
            constexprs = _with_unused_none(kernel, constexprs)
            signature = _signature(kernel, constexprs, pointers)
            source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
            try:
                compiled = triton.compile(source, target=target, options=options)
                shared = compiled.metadata.shared
                verdict = f"ok, {shared} B shared"
                if shared > SHARED_MEMORY_LIMIT[arch]:
                    failed += 1
                    verdict = f"FAILED: {shared} B shared > {SHARED_MEMORY_LIMIT[arch]} B"
                if args.dump is not None:
                    dump_kernel(args.dump, arch, label, compiled.asm)
            except Exception as exc:  # reported per kernel, the rest still compiles
                failed += 1
                verdict = f"FAILED: {type(exc).__name__}: {str(exc).strip()[:2000]}"
            print(f"sm_{arch} {label}: {verdict} ({time.perf_counter() - started:.1f} s)")
    if 90 in args.archs:  # the Gluon Hopper forward, where this Triton has Gluon
        from scfa_kernels import _gluon_compile, _gluon_fwd

        if _gluon_fwd.GLUON_IMPORT_ERROR is None:
            for label, verdict in _gluon_compile.check_all():
                failed += not verdict.startswith("ok")
                print(f"sm_90 {label}: {verdict}")
    print(f"triton {triton.__version__}: {'all kernels compile' if not failed else 'FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
