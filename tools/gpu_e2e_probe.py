"""Where the attention time of a GPT-2-small step goes: a developer tool for
docs/performance-notes.md.

    python tools/gpu_e2e_probe.py --out DIR [--seq-len 16384]

At B=1, T=16384, eager, for hash nb=8 and nb=32 (LSH buckets of q and of k per layer, as the
e2e suites run them) and QK p=0.8, it prints
* the attention kernels of one step from `torch.profiler`: calls and ms per step, and the
  spread of one kernel's time over the 12 layers (min / median / max);
* for the hash rows, how balanced the model's LSH buckets are: the density of allowed
  causal pairs per layer (1/nb when every bucket holds T/nb queries and keys) and the
  largest bucket's share of the queries;
* the kernels alone (fwd+bwd, do_bench) on the ids of the model's first layer against
  uniform random ids of the same shape, so the cost of the imbalance reads directly.
Writes DIR/e2e_probe.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import torch
import triton

from scfa_bench.e2e.kernel_share import is_attention_kernel, profile_kernels
from scfa_bench.e2e.layer_attention import LayerLsh
from scfa_bench.e2e.model import GPT2_SMALL
from scfa_bench.e2e.step import StepConfig, build_step
from scfa_kernels import hash_sparse_attention

POINTS = (
    ("scfa_hash", {"n_buckets": 8}),
    ("scfa_hash", {"n_buckets": 32}),
    ("scfa_qk", {"drop_rate": 0.8}),
)


def causal_density(q_hash: torch.Tensor, k_hash: torch.Tensor, n_buckets: int) -> torch.Tensor:
    """Allowed causal pairs (query i, key j <= i, same bucket) over T(T+1)/2, per (batch, head)."""
    T = q_hash.shape[1]
    keys_so_far = torch.nn.functional.one_hot(k_hash.long(), n_buckets).cumsum(dim=1)  # B,T,H,nb
    allowed = keys_so_far.gather(-1, q_hash.long().unsqueeze(-1)).squeeze(-1).sum(dim=1)
    return allowed.double() / (T * (T + 1) / 2)


def _record_lsh() -> list[tuple[torch.Tensor, torch.Tensor]]:
    recorded: list[tuple[torch.Tensor, torch.Tensor]] = []
    original = LayerLsh.pair

    def pair(self: LayerLsh, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q_hash, k_hash = original(self, q, k)
        if len(recorded) < GPT2_SMALL.layers:
            recorded.append((q_hash.clone(), k_hash.clone()))
        return q_hash, k_hash

    LayerLsh.pair = pair  # type: ignore[method-assign]
    return recorded


def _kernel_table(kernels: list[tuple[str, float]], steps: int) -> dict:
    per_name: dict[str, list[float]] = defaultdict(list)
    total = 0.0
    for name, us in kernels:
        total += us
        if is_attention_kernel(name):
            per_name[name[:60]].append(us / 1e3)
    table = {}
    for name, times in sorted(per_name.items(), key=lambda kv: -sum(kv[1])):
        table[name] = {
            "calls_per_step": len(times) / steps,
            "ms_per_step": sum(times) / steps,
            "ms_min": min(times),
            "ms_median": statistics.median(times),
            "ms_max": max(times),
        }
    return {"total_gpu_ms_per_step": total / 1e3 / steps, "attention_kernels": table}


def _kernel_alone(q_hash: torch.Tensor, k_hash: torch.Tensor, n_buckets: int) -> float:
    B, T, H = q_hash.shape
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v, do = (
        torch.randn(B, T, H, 64, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(4)
    )
    q, k, v = (x.requires_grad_() for x in (q, k, v))

    def call() -> None:
        hash_sparse_attention(q, k, v, q_hash, k_hash, n_buckets=n_buckets).backward(do)

    return float(triton.testing.do_bench(call, grad_to_none=[q, k, v], return_mode="median"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--seq-len", type=int, default=16384)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    recorded = _record_lsh()
    report: dict = {"device": torch.cuda.get_device_name(), "seq_len": args.seq_len}
    steps = 3
    for impl, axes in POINTS:
        label = f"{impl} {axes}"
        recorded.clear()
        step = build_step(
            StepConfig(model=GPT2_SMALL, batch=1, seq_len=args.seq_len, attention=impl, **axes)
        )
        for _ in range(3):
            step.run()
        row = _kernel_table(profile_kernels(step.run, steps), steps)
        print(f"{label}: GPU {row['total_gpu_ms_per_step']:.2f} ms/step")
        for name, info in row["attention_kernels"].items():
            print(
                f"  {info['ms_per_step']:7.3f} ms/step x{info['calls_per_step']:.0f}  "
                f"per call {info['ms_min']:.3f}/{info['ms_median']:.3f}/{info['ms_max']:.3f}  "
                f"{name}"
            )
        if impl == "scfa_hash" and recorded:
            nb = axes["n_buckets"]
            densities, biggest = [], []
            for q_hash, k_hash in recorded:
                densities.append(causal_density(q_hash, k_hash, nb).mean().item())
                counts = torch.nn.functional.one_hot(q_hash.long(), nb).sum(dim=1)  # B,H,nb
                biggest.append((counts.max(dim=-1).values.double() / args.seq_len).max().item())
            q0, k0 = recorded[0]
            uniform_q, uniform_k = torch.randint_like(q0, nb), torch.randint_like(k0, nb)
            row["density_per_layer"] = densities
            row["largest_bucket_share_per_layer"] = biggest
            row["kernel_alone_ms_layer0_ids"] = _kernel_alone(q0, k0, nb)
            row["kernel_alone_ms_uniform_ids"] = _kernel_alone(uniform_q, uniform_k, nb)
            print(
                f"  density per layer (uniform 1/{nb} = {1 / nb:.4f}): "
                + " ".join(f"{d:.4f}" for d in densities)
            )
            print("  largest bucket share: " + " ".join(f"{b:.3f}" for b in biggest))
            print(
                f"  kernel alone fwd+bwd: layer-0 ids {row['kernel_alone_ms_layer0_ids']:.3f} ms, "
                f"uniform ids {row['kernel_alone_ms_uniform_ids']:.3f} ms"
            )
        report[label] = row
        del step
        torch.cuda.empty_cache()
    path = args.out / "e2e_probe.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
