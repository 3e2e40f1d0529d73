"""GPU check of the end-to-end model step (`scfa_bench.e2e`): correctness, then a small table.

    python tools/e2e_gpu_check.py                       # T=4096, B=4, compile off and on
    python tools/e2e_gpu_check.py --seq-len 16384 --batch 1 --compile off

1. Correctness: a 1-layer model (d_model 256, 4 heads of 64, T=1024, bf16 autocast): the loss
   and every gradient of `scfa_hash` / `hashformer` / `scfa_qk` against the same model on the
   dense masked reference with the same buckets / keep masks.
2. GPT-2-small steps for each implementation: median [q20, q80] ms, tokens/s, peak MiB,
   attention ms and share of the GPU time, speedup over `sdpa_cudnn` compiled the same way.
3. The heaviest kernels of one step per implementation with the attention rule's verdict, so
   a kernel the rule misclassifies shows up (a `*` marks those counted as attention).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import torch

from scfa_bench.e2e.attention import build_attention
from scfa_bench.e2e.kernel_share import is_attention_kernel, profile_kernels
from scfa_bench.e2e.measurement import MeasureSettings, measure_step
from scfa_bench.e2e.model import GPT2_SMALL, DecoderLM, ModelConfig
from scfa_bench.e2e.step import StepConfig, build_step

IMPLS = (
    ("sdpa_cudnn", {}),
    ("identity", {}),
    ("scfa_hash", {"n_buckets": 8}),
    ("scfa_hash", {"n_buckets": 32}),
    ("hashformer", {"n_buckets": 8}),
    ("scfa_qk", {"drop_rate": 0.5}),
    ("scfa_qk", {"drop_rate": 0.8}),
)


def loss_and_grads(name: str, cfg: ModelConfig, axes: dict, t: int) -> tuple[float, dict]:
    attention = build_attention(
        name,
        heads=cfg.heads,
        head_dim=cfg.head_dim,
        dtype=torch.bfloat16,
        device="cuda",
        seed=1,
        **axes,
    )
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = DecoderLM(cfg, attention.for_layer, shared_qk=attention.shared_qk)
    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, cfg.vocab, (2, t + 1), generator=gen, device="cuda")
    torch.manual_seed(7)  # keep masks
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(ids[:, :-1], ids[:, 1:])
    loss.backward()
    return float(loss), {n: p.grad.float() for n, p in model.named_parameters()}


def correctness() -> bool:
    # One layer: its buckets come from identical inputs in both models. Deeper, bf16 noise
    # between the two models' hidden states could flip a near-tie LSH bucket.
    cfg = ModelConfig(layers=1, d_model=256, heads=4, vocab=512, max_seq_len=1024)
    ok = True
    for fast, slow, axes in (
        ("scfa_hash", "naive_hash", {"n_buckets": 8}),
        ("hashformer", "naive_hashformer", {"n_buckets": 8}),
        ("scfa_qk", "naive_qk", {"drop_rate": 0.5}),
    ):
        loss_f, grads_f = loss_and_grads(fast, cfg, axes, 1024)
        loss_s, grads_s = loss_and_grads(slow, cfg, axes, 1024)
        worst = max(
            float((grads_f[n] - grads_s[n]).abs().max() / grads_s[n].abs().max().clamp_min(1e-12))
            for n in grads_s
        )
        passed = abs(loss_f - loss_s) < 1e-2 and worst < 5e-2  # bf16 tolerances
        ok &= passed
        print(
            f"{fast:>11} vs {slow:<17} loss {loss_f:.5f} / {loss_s:.5f}  "
            f"worst grad rel err {worst:.2e}  {'PASS' if passed else 'FAIL'}"
        )
    return ok


def table(seq_len: int, batch: int, compiles: list[bool], settings: MeasureSettings) -> None:
    print(f"\nGPT-2 small, T={seq_len}, B={batch}, bf16 autocast, fwd+bwd, no optimizer")
    print(
        f"{'impl':<22}{'compile':>8}{'ms median [q20, q80]':>28}{'tok/s':>10}{'peak MiB':>10}"
        f"{'attn ms':>9}{'share':>7}{'speedup':>9}"
    )
    for compiled in compiles:
        dense_ms = None
        for name, axes in IMPLS:
            cfg = StepConfig(
                GPT2_SMALL, batch=batch, seq_len=seq_len, attention=name, compile=compiled, **axes
            )
            m = measure_step(cfg, settings)
            label = name + "".join(f" {k}={v}" for k, v in axes.items())
            if m.status != "ok":
                print(f"{label:<22}{compiled!s:>8}  {m.status}: {m.error}")
                continue
            if name == "sdpa_cudnn":
                dense_ms = m.ms_median
            speedup = f"{dense_ms / m.ms_median:.2f}x" if dense_ms else "-"
            share = f"{m.attention_share:.2f}" if m.attention_share is not None else "-"
            attn = f"{m.attention_ms:.1f}" if m.attention_ms is not None else "-"
            print(
                f"{label:<22}{compiled!s:>8}"
                f"{f'{m.ms_median:.1f} [{m.ms_q20:.1f}, {m.ms_q80:.1f}]':>28}"
                f"{m.tokens_per_s:>10.0f}{m.peak_mem_mib:>10.0f}{attn:>9}{share:>7}{speedup:>9}"
            )


def heaviest_kernels(seq_len: int, batch: int, top: int) -> None:
    for name, axes in IMPLS:
        cfg = StepConfig(GPT2_SMALL, batch=batch, seq_len=seq_len, attention=name, **axes)
        step = build_step(cfg)
        for _ in range(2):
            step.run()
        per_name: dict[str, float] = defaultdict(float)
        for kernel, us in profile_kernels(step.run, 1):
            per_name[kernel] += us
        total = sum(per_name.values())
        print(f"\n{name} {axes}: {total / 1e3:.1f} ms of GPU time in one step")
        for kernel, us in sorted(per_name.items(), key=lambda kv: -kv[1])[:top]:
            mark = "*" if is_attention_kernel(kernel) else " "
            print(f"  {mark} {us / 1e3:8.2f} ms  {kernel[:110]}")
        del step
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both")
    parser.add_argument("--top", type=int, default=12, help="kernels listed per implementation")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA device", file=sys.stderr)
        return 2
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    ok = correctness()
    compiles = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    table(args.seq_len, args.batch, compiles, MeasureSettings())
    heaviest_kernels(args.seq_len, args.batch, args.top)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
