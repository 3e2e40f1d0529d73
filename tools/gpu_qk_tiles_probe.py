"""QK-sparse at a high drop rate: GPU time of each kernel under other dK/dV tiles
(docs/performance-notes.md).

    python tools/gpu_qk_tiles_probe.py --out DIR

At T=16384, D=64, bf16, drop rate 0.8 (random keep masks), B x H = 1 x 12 and 4 x 48: the
profiler's CUDA time per fwd+bwd call of every kernel, under the configuration `config.select`
picks for QK-sparse (tiles for T rows), under dK/dV launch configurations sized for the
kept rows, and with dK/dV ranges cut into pieces whatever the grid's size. Kernel times, not
do_bench: at 1 x 12 the calls are host-bound (docs/performance-notes.md, "Small grids").
Writes DIR/qk_tiles_probe.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from gpu_small_batch_probe import profile_call  # this folder is on sys.path when run

from scfa_kernels import config as kcfg
from scfa_kernels import qk_sparse_attention

T, D, DROP = 16384, 64, 0.8
DKDV = ((32, 128, 4, 3), (32, 64, 4, 1), (64, 64, 4, 2), (32, 32, 4, 2), (16, 64, 4, 2))
# dK/dV pieces without the host's small-grid gate (docs/performance-notes.md): the device gate alone
# decides which ranges are cut.
ANY_GRID_SPLIT = kcfg.RangeSplit(max_pieces=8, target_programs=1 << 30, min_tiles=4, min_seq_len=0)


def kernel_ms(call, grads: list[torch.Tensor]) -> dict[str, float]:
    """CUDA ms per call of each kernel, heaviest first."""
    kernels = profile_call(call, grads, calls=10)["kernels"]
    return {name: info["ms_per_call"] for name, info in kernels.items()}


def probe_shape(B: int, H: int) -> dict:
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, do = (
        torch.randn(B, T, H, D, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)
    )
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    q_keep, k_keep = (torch.rand(B, T, H, device="cuda", generator=g) >= DROP for _ in range(2))

    def call() -> None:
        qk_sparse_attention(q, k, v, q_keep, k_keep).backward(do)

    base = kcfg.select(q.device, q.dtype, D, T)
    rows: dict = {"selected": kernel_ms(call, [q, k, v])}
    for launch in DKDV:
        cfg = dataclasses.replace(base, dkdv=kcfg.LaunchConfig(*launch))
        try:
            with kcfg.override(cfg):
                rows[f"dkdv {launch}"] = kernel_ms(call, [q, k, v])
        except Exception as exc:  # out of shared memory etc.: record and go on
            rows[f"dkdv {launch}"] = {"error": f"{type(exc).__name__}: {str(exc)[:100]}"}
    for launch in (None, (32, 64, 4, 1)):
        cfg = base if launch is None else dataclasses.replace(base, dkdv=kcfg.LaunchConfig(*launch))
        name = f"dkdv {launch or 'selected'}, pieces on any grid"
        try:
            with kcfg.override(cfg), kcfg.override_split(dkdv=ANY_GRID_SPLIT):
                rows[name] = kernel_ms(call, [q, k, v])
        except Exception as exc:
            rows[name] = {"error": f"{type(exc).__name__}: {str(exc)[:100]}"}
    print(f"B={B} H={H} (selected: {base})")
    for name, kernels in rows.items():
        total = sum(t for t in kernels.values() if isinstance(t, float))
        shown = ", ".join(f"{n.split('_kernel')[0]} {t:.3f}" for n, t in list(kernels.items())[:3])
        print(f"  {name}: kernels {total:.3f} ms/call ({shown})")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": torch.cuda.get_device_name(), "T": T, "drop_rate": DROP}
    for B, H in ((1, 12), (4, 48)):
        report[f"{B}x{H}"] = probe_shape(B, H)
        torch.cuda.empty_cache()
    path = args.out / "qk_tiles_probe.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
