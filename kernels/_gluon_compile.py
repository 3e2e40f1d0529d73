"""Compile the Gluon Hopper kernels (forward, backward dK/dV and dQ) for sm_90 without a GPU
(``tools/compile_kernels.py`` style): ``python -m scfa_kernels._gluon_compile`` prints, per
kernel, dtype and head dim, whether it compiles and whether its PTX holds wgmma and TMA
(``cp.async.bulk.tensor``), with ptxas's registers and spills.

Must run without TRITON_INTERPRET. Exit code 0 iff every case compiles with both.
"""

from __future__ import annotations

import itertools
import sys
import time

_POINTERS = {
    "LSE": "*fp32",
    "q_perm": "*i32",
    "q_bucket_sorted": "*i32",
    "q_composite": "*i64",
    "k_perm": "*i32",
    "k_bucket_sorted": "*i32",
    "k_composite": "*i64",
    "tile_start": "*i32",
    "tile_n_full": "*i32",
    "tile_end": "*i32",
    "LSEOrig": "*fp32",
    "Delta": "*fp32",
    "KeyBias": "*fp32",
}
_TENSORS = ("Q", "K", "V", "Out", "dK", "dV", "dQ")
_DESCRIPTORS = {"q_desc": "BLOCK_M", "do_desc": "BLOCK_M", "k_desc": "BLOCK_N", "v_desc": "BLOCK_N"}
KERNELS = ("fwd", "fwd_ws", "dkdv", "dq")


def _kernel_and_tiles(kernel: str, head_dim: int):
    """The Gluon kernel named `kernel` and its (BLOCK_M, BLOCK_N, num_warps, STAGES)."""
    from . import _gluon_bwd, _gluon_fwd

    if kernel in ("fwd", "fwd_ws"):
        tiles = _gluon_fwd.tile_shape(head_dim, warp_specialize=kernel == "fwd_ws")
        return _gluon_fwd.hopper_attention_fwd_kernel, tiles
    shapes = _gluon_bwd.tile_shapes(head_dim)
    if kernel == "dkdv":
        return _gluon_bwd.hopper_bwd_dkdv_kernel, shapes["dkdv"]
    return _gluon_bwd.hopper_bwd_dq_kernel, shapes["dq"]


def compile_case(dtype: str, head_dim: int, arch: int = 90, tiles=None, kernel: str = "fwd"):
    """The compiled kernel (triton.compile's result) `kernel` (one of KERNELS) for `dtype`
    ("bf16"/"fp16"); `tiles`: (BLOCK_M, BLOCK_N, num_warps, STAGES) instead of its own.
    "fwd_ws" is the forward with its loader warp (WARP_SPECIALIZE)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon import language as gl

    jit_fn, own_tiles = _kernel_and_tiles(kernel, head_dim)
    block_m, block_n, num_warps, stages = tiles or own_tiles
    constexprs = {
        "BLOCK_M": block_m,
        "BLOCK_N": block_n,
        "HEAD_DIM": head_dim,
        "STAGES": stages,
        "num_warps": num_warps,
        "WARP_SPECIALIZE": kernel == "fwd_ws",
    }
    gl_dtype = gl.bfloat16 if dtype == "bf16" else gl.float16
    rows = {"BLOCK_M": block_m, "BLOCK_N": block_n}
    signature = {}
    for name in jit_fn.arg_names:
        if name in constexprs:
            signature[name] = "constexpr"
        elif name in _DESCRIPTORS:
            shape = [rows[_DESCRIPTORS[name]], head_dim]
            layout = gl.NVMMASharedLayout.get_default_for(shape, gl_dtype)
            signature[name] = f"tensordesc<{dtype}[{shape[0]}, {shape[1]}],{layout!r}>"
        elif name in _TENSORS:
            signature[name] = f"*{dtype}"
        elif name in _POINTERS:
            signature[name] = _POINTERS[name]
        elif name in ("qk_scale", "sm_scale"):
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
    source = _source(jit_fn, signature, constexprs)
    options = {"num_warps": num_warps}
    if kernel == "fwd_ws":
        from ._gluon_fwd import WS_MAXNREG

        options["maxnreg"] = WS_MAXNREG
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)


def _source(kernel, signature, constexprs):
    from triton.experimental.gluon._runtime import GluonASTSource

    consts = {k: v for k, v in constexprs.items() if k in kernel.arg_names}
    return GluonASTSource(fn=kernel, signature=signature, constexprs=consts)


def ptxas_report(ptx: str, arch: int = 90) -> str:
    """Registers, spills and serialisation notices of Triton's bundled ptxas on `ptx`
    (empty if that ptxas is not found)."""
    import subprocess
    import tempfile
    from pathlib import Path

    import triton

    bin_dir = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    # Triton 3.9 writes PTX newer than its `ptxas` reads; its `ptxas-blackwell` reads it.
    done = None
    for name in ("ptxas", "ptxas-blackwell"):
        if not (bin_dir / name).exists():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "kernel.ptx"
            src.write_text(ptx)
            out = str(Path(tmp) / "k.cubin")
            cmd = [str(bin_dir / name), f"-arch=sm_{arch}a", "-v", str(src), "-o", out]
            done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode == 0:
            break
    if done is None:
        return ""
    lines = (done.stdout + done.stderr).splitlines()
    keep = ("registers", "spill", "C7514", "error")
    return "; ".join(
        line.split(":", 1)[-1].strip() for line in lines if any(k in line for k in keep)
    )


def _error_chain(exc: BaseException) -> str:
    """The whole message of a compile error and of each error behind it (Triton's
    CompilationError shows the failing call site; the cause says why)."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 6:
        parts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return "\n  caused by ".join(parts)


def check_all(kernels: tuple[str, ...] = KERNELS) -> list[tuple[str, str]]:
    """(case, verdict) for each of `kernels` x bf16/fp16 x D 64/128."""
    results = []
    for kernel, dtype, head_dim in itertools.product(kernels, ("bf16", "fp16"), (64, 128)):
        label = f"{kernel} ({dtype}, d{head_dim})"
        started = time.perf_counter()
        try:
            compiled = compile_case(dtype, head_dim, kernel=kernel)
            ptx = compiled.asm["ptx"]
            missing = [op for op in ("wgmma", "cp.async.bulk.tensor") if op not in ptx]
            report = ptxas_report(ptx)
            extra = f" [ptxas: {report}]" if report else ""
            if missing:
                verdict = f"FAILED: PTX lacks {missing}" + extra
            elif "C7514" in report:  # ptxas serialises the wgmmas: no overlap left
                verdict = "FAILED: wgmma serialised" + extra
            else:
                verdict = "ok" + extra
        except Exception as exc:  # reported per case, the rest still compiles
            verdict = "FAILED: " + _error_chain(exc)
        results.append((label, f"{verdict} ({time.perf_counter() - started:.1f} s)"))
    return results


def main() -> int:
    import triton

    results = check_all()
    for label, verdict in results:
        print(f"sm_90 {label}: {verdict}")
    ok = all(v.startswith("ok") for _, v in results)
    print(f"triton {triton.__version__}: {'gluon kernels compile' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
