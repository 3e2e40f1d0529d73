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
import sys
import time

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


def _cases():
    from scfa_kernels import _triton_bwd, _triton_fwd, _triton_plan, _triton_sort, config

    attention_configs = {
        "bf16 d64 large buckets": ("*bf16", 64, config._CUDA_LARGE_BUCKETS, None),
        "bf16 d64 small buckets": ("*bf16", 64, config._CUDA_SMALL_BUCKETS, None),
        "fp16 d128": ("*fp16", 128, config._CUDA_HEAD_128, None),
        "fp32 d64": ("*fp32", 64, config._CUDA_FLOAT32, "ieee"),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, nargs="+", default=[80, 90])
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("error: unset TRITON_INTERPRET: the interpreter does not compile", file=sys.stderr)
        return 2
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    failed = 0
    for arch in args.archs:
        target = GPUTarget("cuda", arch, 32)
        for label, kernel, constexprs, pointers, options in _cases():
            started = time.perf_counter()
            signature = _signature(kernel, constexprs, pointers)
            source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs)
            try:
                triton.compile(source, target=target, options=options)
                verdict = "ok"
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
