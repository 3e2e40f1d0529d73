"""The check before timing: compare an implementation with the dense masked reference.

Rows: all query rows when seq_len <= 1024, else a seeded random sample of `check_rows` rows
(rows 0 and T-1 always included), so the reference never needs T x T memory; it is also computed
in chunks of rows.

Error measure, per tensor: `scfa_kernels.tolerances.max_rel_err`, the largest norm-relative
error ||x - ref|| / ||ref|| over (batch, head) (inf when x has NaN or inf).
The forward output is always checked. With gradients (bwd modes) the upstream gradient dO is
zero outside the sampled rows, so dK and dV of the kernel equal those of the reference computed
on the sampled rows only, and dQ is compared on those rows: an exact check at O(R*T) cost.
The recorded `check_rel_err` is the largest error over the tensors checked; the check passes when
the output is within FORWARD_TOLERANCE and each gradient within GRADIENT_TOLERANCE for the dtype:
views of `scfa_kernels.tolerances.TOLERANCES`, the one table the kernel tests and the GPU check
use too (each bound with its reason there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from scfa_bench.impls.base import AttentionInputs
from scfa_bench.measure.inputs import stable_seed
from scfa_kernels.tolerances import DTYPE_NAMES, TOLERANCES, max_rel_err

# Bounds on `relative_error` per dtype name, from the one table.
FORWARD_TOLERANCE = {name: TOLERANCES[dtype].out for name, dtype in DTYPE_NAMES.items()}
GRADIENT_TOLERANCE = {name: TOLERANCES[dtype].grad for name, dtype in DTYPE_NAMES.items()}
ALL_ROWS_MAX_SEQ_LEN = 1024
# Float32 elements of one chunk's (B, H, R, T) score tensor (512 MiB).
_CHUNK_ELEMENTS = 2**27

MaskFn = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class CheckResult:
    rel_err: float  # largest relative error over the tensors checked
    passed: bool
    detail: str  # per-tensor errors and tolerances, for the `error` column when it fails


def sample_rows(seq_len: int, check_rows: int, *, seed: int) -> Tensor:
    """Sorted unique query positions to check (LongTensor on the CPU)."""
    if seq_len <= max(ALL_ROWS_MAX_SEQ_LEN, check_rows):
        return torch.arange(seq_len)
    gen = torch.Generator().manual_seed(stable_seed(seed, "rows", seq_len))
    middle = torch.randperm(seq_len - 2, generator=gen)[: max(check_rows - 2, 0)] + 1
    edges = torch.tensor([0, seq_len - 1])
    return torch.sort(torch.cat([edges, middle])).values


def mask_fn_for(inputs: AttentionInputs) -> MaskFn:
    """The reference mask: the inputs' own mask if set, else their pattern: hash, QK, or dense
    causal (one bucket)."""
    from scfa_kernels import reference

    if inputs.reference_mask is not None:
        return inputs.reference_mask
    if inputs.q_hash is not None and inputs.k_hash is not None:
        q_hash, k_hash = inputs.q_hash, inputs.k_hash
        return lambda rows: reference.hash_mask(q_hash, k_hash, rows)
    if inputs.q_keep is not None and inputs.k_keep is not None:
        q_keep, k_keep = inputs.q_keep, inputs.k_keep
        return lambda rows: reference.qk_mask(q_keep, k_keep, rows)
    b, t, h, _ = inputs.q.shape
    one_bucket = torch.zeros((b, t, h), dtype=torch.int32, device=inputs.q.device)
    return lambda rows: reference.hash_mask(one_bucket, one_bucket, rows)


def relative_error(actual: Tensor, expected: Tensor) -> float:
    """`max_rel_err` of actual against expected; inf when actual has NaN or inf."""
    if not torch.isfinite(actual).all():
        return float("inf")
    return max_rel_err(actual.float(), expected.float())


def _reference_outputs(
    inputs: AttentionInputs, mask_fn: MaskFn, rows: Tensor, do_rows: Tensor | None
) -> tuple[Tensor, list[Tensor]]:
    """Reference output on `rows` and, with do_rows, (dq on rows, dk, dv) of those rows only."""
    from scfa_kernels import reference

    want_grads = do_rows is not None
    q, k, v = (x.detach().requires_grad_(want_grads) for x in inputs.leaves)
    b, t, h = q.shape[0], q.shape[1], q.shape[2]
    chunk = max(1, _CHUNK_ELEMENTS // (b * h * t))
    rows = rows.to(q.device)
    outs = []
    for start in range(0, rows.numel(), chunk):
        part = rows[start : start + chunk]
        with torch.set_grad_enabled(want_grads):
            if inputs.reference_attention is not None:
                out = inputs.reference_attention(q[:, part], k, v, part)
            else:
                out = reference.masked_attention(q[:, part], k, v, mask_fn(part))
            if do_rows is not None:
                (out * do_rows[:, start : start + chunk].float()).sum().backward()
        outs.append(out.detach())
    grads = []
    if want_grads:
        zero = lambda x: x.grad if x.grad is not None else torch.zeros_like(x, dtype=torch.float32)
        grads = [zero(q)[:, rows], zero(k), zero(v)]
    return torch.cat(outs, dim=1), grads


def check_against_reference(
    forward: Callable[[], Tensor],
    inputs: AttentionInputs,
    *,
    dtype: str,
    rows: Tensor,
    with_grads: bool,
    seed: int,
) -> CheckResult:
    """Run `forward` (and its backward when with_grads) and compare with the reference."""
    mask_fn = mask_fn_for(inputs)
    rows_dev = rows.to(inputs.q.device)
    errors: dict[str, float] = {}
    tolerances: dict[str, float] = {"out": FORWARD_TOLERANCE[dtype]}

    if with_grads:
        for x in inputs.leaves:
            x.grad = None
        out = forward()
        do = torch.zeros_like(out)
        gen = torch.Generator(device=out.device.type).manual_seed(stable_seed(seed, "check-do"))
        do_rows = torch.randn(
            (out.shape[0], rows.numel(), *out.shape[2:]),
            generator=gen,
            device=out.device,
            dtype=out.dtype,
        )
        do[:, rows_dev] = do_rows
        out.backward(do)
        got_grads = [
            inputs.q.grad[:, rows_dev] if inputs.q.grad is not None else None,
            inputs.k.grad,
            inputs.v.grad,
        ]
        got_out = out.detach()[:, rows_dev]
        for x in inputs.leaves:
            x.grad = None
        del out, do
        ref_out, ref_grads = _reference_outputs(inputs, mask_fn, rows, do_rows)
        for name, got, ref in zip(("dq", "dk", "dv"), got_grads, ref_grads, strict=True):
            tolerances[name] = GRADIENT_TOLERANCE[dtype]
            errors[name] = float("inf") if got is None else relative_error(got, ref)
    else:
        with torch.no_grad():
            got_out = forward().detach()[:, rows_dev]
        ref_out, _ = _reference_outputs(inputs, mask_fn, rows, None)

    errors["out"] = relative_error(got_out, ref_out)
    passed = all(errors[name] <= tolerances[name] for name in errors)
    detail = ", ".join(
        f"{name} rel err {errors[name]:.3g} (tol {tolerances[name]:g})" for name in errors
    )
    return CheckResult(rel_err=max(errors.values()), passed=passed, detail=detail)
