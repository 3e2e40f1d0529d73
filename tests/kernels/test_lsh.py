"""Angular LSH bucket ids: the fused kernel against a float64 reference, ties, the geometry.

lsh_buckets(x, nb) = argmax(concat(x R, -x R)) with a random unit-column R per head, so the
ids depend only on the direction of x, and -x lands exactly nb/2 buckets away. The kernel
sums in another order than any reference, so rows whose two best candidates lie within a
float32 rounding of each other may differ; every other row must match exactly.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from scfa_kernels import lsh as lsh_module
from scfa_kernels.lsh import (
    lsh_buckets,
    lsh_buckets_from_rotations,
    lsh_buckets_pair,
    lsh_buckets_pair_from_rotations,
    lsh_rotations,
)

# Two candidates closer than this (relative to |x|) are a near-tie: float32 sums of length
# D <= 256 may order them either way (error <= D * 2**-24 * |x| for unit columns).
NEAR_TIE = 2e-5


def _x(b: int = 2, t: int = 64, h: int = 3, d: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, t, h, d, generator=torch.Generator().manual_seed(seed))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _buckets(x: torch.Tensor, n_buckets: int, seed: int) -> torch.Tensor:
    return lsh_buckets(x, n_buckets, generator=_gen(seed))


def _reference(x: torch.Tensor, rotations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 ids (torch.argmax's first-index rule) and a near-tie flag per row."""
    p = torch.einsum("bthd,hdr->bthr", x.double(), rotations.double())
    candidates = torch.cat([p, -p], dim=-1)
    ids = candidates.argmax(dim=-1).to(torch.int32)
    top = candidates.topk(2, dim=-1).values
    scale = x.double().norm(dim=-1)
    near = (top[..., 0] - top[..., 1]) <= NEAR_TIE * scale
    return ids, near


def _assert_matches_reference(ids: torch.Tensor, x: torch.Tensor, rotations: torch.Tensor):
    ref, near = _reference(x, rotations)
    assert ids.shape == ref.shape and ids.dtype == torch.int32
    wrong = ids != ref
    far_wrong = wrong & ~near
    assert not far_wrong.any(), (
        f"{int(far_wrong.sum())} ids differ from the float64 reference away from any near-tie, "
        f"first at {far_wrong.nonzero()[0].tolist()}"
    )
    # Near-ties must stay rare, or the margin above hides real errors.
    assert int(near.sum()) <= max(1, ref.numel() // 100), f"{int(near.sum())} near-ties"


# ---------------------------------------------------------------- against the reference


@pytest.mark.parametrize(
    ("dtype", "n_buckets", "d", "t"),
    [
        (torch.float32, 2, 16, 67),
        (torch.float32, 6, 24, 67),
        (torch.float32, 8, 64, 33),
        (torch.float16, 8, 16, 67),
        (torch.float16, 32, 32, 45),
        (torch.bfloat16, 8, 64, 45),
        (torch.float64, 16, 16, 45),
        (torch.float32, 256, 16, 29),  # 128 rotations: several column blocks
        (torch.float16, 6, 160, 29),  # head dim over two blocks, the second masked
        (torch.float32, 4, 256, 29),
    ],
)
def test_fused_ids_equal_float64_reference(device, dtype, n_buckets, d, t):
    x = _x(b=2, t=t, h=3, d=d, seed=n_buckets + d).to(device=device, dtype=dtype)
    ids = _buckets(x, n_buckets, seed=1)
    rotations = lsh_rotations(3, d, n_buckets, generator=_gen(1), device=device)
    _assert_matches_reference(ids, x, rotations)


def _strided_views(b: int, t: int, h: int, d: int, device: str) -> dict[str, torch.Tensor]:
    gen = _gen(3)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).to(device)

    return {
        "heads_first": randn(b, h, t, d).transpose(1, 2),
        "qkv_slice": randn(b, t, 3, h, d)[:, :, 1],
        "every_other_d": randn(b, t, h, 2 * d)[..., ::2],
        "reversed_axes": randn(d, h, t, b).permute(3, 2, 1, 0),
        "broadcast_head": randn(b, t, 1, d).expand(b, t, h, d),
    }


@pytest.mark.parametrize("layout", list(_strided_views(1, 1, 1, 1, "cpu")))
def test_any_strides_give_the_contiguous_ids(device, layout):
    x = _strided_views(2, 37, 3, 16, device)[layout]
    assert not x.is_contiguous()
    ids = _buckets(x, 8, seed=4)
    assert torch.equal(ids, _buckets(x.contiguous(), 8, seed=4))
    _assert_matches_reference(ids, x, lsh_rotations(3, 16, 8, generator=_gen(4), device=device))


def test_ids_equal_the_unfused_torch_definition():
    # Same draw of R as the float32 einsum + cat + argmax path the kernel replaces.
    x = _x(t=97, seed=5)
    rotations = lsh_rotations(3, 16, 8, generator=_gen(6))
    torch_ids = lsh_module._lsh_buckets_torch(x, rotations)
    _, near = _reference(x, rotations)
    fused = _buckets(x, 8, seed=6)
    assert torch.equal(fused[~near], torch_ids[~near])


def test_rotations_are_todays_draw():
    gen = _gen(7)
    expected = torch.randn((3, 16, 4), generator=gen, dtype=torch.float32)
    expected = expected / expected.norm(dim=1, keepdim=True)
    assert torch.equal(lsh_rotations(3, 16, 8, generator=_gen(7)), expected)


def test_torch_path_without_the_interpreter(monkeypatch):
    # A CPU tensor with no interpreter takes the unfused path: same ids.
    x = _x(t=45, seed=8)
    fused = _buckets(x, 8, seed=9)
    monkeypatch.setattr(lsh_module.validation, "interpreter_enabled", lambda: False)
    assert not lsh_module._uses_kernel(x)
    unfused = _buckets(x, 8, seed=9)
    _, near = _reference(x, lsh_rotations(3, 16, 8, generator=_gen(9)))
    assert torch.equal(fused[~near], unfused[~near])


def test_empty_sequence_gives_empty_ids():
    ids = _buckets(_x(t=0), 8, seed=0)
    assert ids.shape == (2, 0, 3) and ids.dtype == torch.int32


def test_input_requiring_grad():
    x = _x(t=16).requires_grad_()
    ids = _buckets(x, 4, seed=0)
    assert not ids.requires_grad
    assert torch.equal(ids, _buckets(x.detach(), 4, seed=0))


# ---------------------------------------------------------------- exact ties


def _exact_rotations(columns: list[list[float]], d: int = 16) -> torch.Tensor:
    """(1, d, n) rotations from short column prefixes; exact in float32 (sums of k/4)."""
    out = torch.zeros(1, d, len(columns))
    for j, col in enumerate(columns):
        out[0, : len(col), j] = torch.tensor(col)
    return out


def _op_ids(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    return torch.ops.scfa.lsh_buckets(x, rotations)


def test_zero_row_gets_id_zero(device):
    # p = +0 and -p = -0 compare equal: the first index, 0, wins as in torch.argmax.
    x = torch.zeros(1, 3, 2, 16, device=device)
    ids = _buckets(x, 8, seed=0)
    assert ids.tolist() == torch.zeros(1, 3, 2, dtype=torch.int32).tolist()


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ([1.0, 0.0], 0),  # columns 0 and 2 tie at +1: the first
        ([-1.0, 0.0], 4),  # -p ties at columns 0 and 2: the first of the -p half
        ([0.0, 1.0], 1),  # p_1 = +1 and -p_3 = +1: the p half comes first
        ([0.0, -1.0], 3),  # p_3 = +1 and -p_1 = +1: index 3 < 4 + 1
        ([0.5, 0.5], 0),  # p = (.5, .5, .5, -.5): columns 0, 1, 2 tie
    ],
)
def test_exact_ties_follow_torch_first_index(device, row, expected):
    rotations = _exact_rotations([[1.0], [0.0, 1.0], [1.0], [0.0, -1.0]]).to(device)
    x = torch.zeros(1, 1, 1, 16)
    x[0, 0, 0, :2] = torch.tensor(row)
    x = x.to(device)
    ref, _ = _reference(x, rotations)
    assert int(ref) == expected  # the rule itself, as torch.argmax states it
    assert int(_op_ids(x, rotations)) == expected


def test_ties_across_column_blocks_keep_the_first(device):
    # 80 rotations span two column blocks; columns 5 and 70 are the same plane.
    n_rot = 80
    rotations = torch.zeros(1, 16, n_rot)
    rotations[0, 1, :] = 0.25  # p = 0.25 in every column for x = e1
    rotations[0, 0, 5] = rotations[0, 0, 70] = 1.0
    rotations[0, 0, 9] = rotations[0, 0, 75] = -0.5
    x = torch.zeros(1, 4, 1, 16)
    x[0, 0, 0, 0] = 1.0  # p_5 = p_70 = 1 the maximum: 5
    x[0, 1, 0, 0] = -1.0  # -p_5 = -p_70 = 1 the maximum: n_rot + 5
    x[0, 2, 0, 1] = 1.0  # all p = 0.25: column 0
    x[0, 3, 0, 1] = -1.0  # all -p = 0.25: n_rot + 0
    x, rotations = x.to(device), rotations.to(device)
    ref, _ = _reference(x, rotations)
    assert ref.flatten().tolist() == [5, n_rot + 5, 0, n_rot]
    assert torch.equal(_op_ids(x, rotations), ref)


# The interpreter's numpy matmul warns about the NaNs this test makes on purpose.
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_nan_follows_torch_argmax(device):
    # torch.argmax counts NaN as the maximum: the first NaN column of the p half wins.
    rotations = _exact_rotations([[1.0], [0.0, 1.0], [-1.0]]).to(device)
    x = torch.zeros(1, 3, 1, 16)
    x[0, 0, 0, :2] = torch.tensor([float("inf"), 1.0])  # p = (inf, inf * 0 = NaN, -inf)
    x[0, 1, 0, :2] = torch.tensor([float("-inf"), 1.0])  # p = (-inf, NaN, inf)
    x[0, 2, 0, :2] = torch.tensor([float("inf"), 0.0])  # p = (inf, NaN, -inf)
    x = x.to(device)
    ref, _ = _reference(x, rotations)
    assert ref.flatten().tolist() == [1, 1, 1]
    assert torch.equal(_op_ids(x, rotations), ref)
    # A NaN in every product: index 0.
    x = _x(b=1, t=3, h=1, seed=10)
    x[0, 1, 0, 3] = float("nan")
    x = x.to(device)
    rotations = lsh_rotations(1, 16, 8, generator=_gen(11), device=device)
    ref, _ = _reference(x, rotations)
    assert int(ref[0, 1, 0]) == 0
    assert torch.equal(_op_ids(x, rotations), ref)


# ---------------------------------------------------------------- q and k in one launch


def test_pair_equals_two_single_calls_with_the_same_seed(device):
    q = _x(t=51, seed=12).to(device)
    k = torch.randn(2, 3, 51, 16, generator=_gen(13)).to(device).transpose(1, 2)  # other strides
    q_ids, k_ids = lsh_buckets_pair(q, k, 6, generator=_gen(14))
    assert torch.equal(q_ids, _buckets(q, 6, seed=14))
    assert torch.equal(k_ids, _buckets(k, 6, seed=14))
    assert q_ids.data_ptr() != k_ids.data_ptr()


def test_pair_with_mixed_dtypes(device):
    q = _x(t=33, seed=15).to(device, torch.float16)
    k = _x(t=33, seed=16).to(device)
    q_ids, k_ids = lsh_buckets_pair(q, k, 8, generator=_gen(17))
    assert torch.equal(q_ids, _buckets(q, 8, seed=17))
    assert torch.equal(k_ids, _buckets(k, 8, seed=17))


# ---------------------------------------------------------------- torch.compile


def test_compiles_with_no_graph_break():
    def step(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        gen = None  # the global generator: seeded below for both runs
        q_ids = lsh_buckets(q, 8, generator=gen)
        q2, k2 = lsh_buckets_pair(q, k, 8)
        return q_ids + q2 + k2

    q, k = _x(t=20, seed=18), _x(t=20, seed=19)
    explanation = torch._dynamo.explain(step)(q, k)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    compiled = torch.compile(step, fullgraph=True, backend="eager")
    torch.manual_seed(0)
    got = compiled(q, k)
    torch.manual_seed(0)
    assert torch.equal(got, step(q, k))


def test_compiles_with_rotations_drawn_outside():
    # A torch.Generator object inside a compiled region is a graph break in torch itself
    # (dynamo cannot proxy it), so seeded planes are drawn outside and passed to the op.
    rotations = lsh_rotations(3, 16, 8, generator=_gen(21))

    def step(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q_ids, k_ids = torch.ops.scfa.lsh_buckets_pair(q, k, rotations)
        return q_ids, k_ids + torch.ops.scfa.lsh_buckets(k, rotations)

    q, k = _x(t=20, seed=22), _x(t=20, seed=23)
    explanation = torch._dynamo.explain(step)(q, k)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    q_ids, k_sum = torch.compile(step, fullgraph=True, backend="eager")(q, k)
    assert torch.equal(q_ids, _buckets(q, 8, seed=21))
    assert torch.equal(k_sum, 2 * _buckets(k, 8, seed=21))


class _OpsSeen(TorchDispatchMode):
    """The names of the operators dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_from_rotations_equal_the_operators(device, dtype):
    rotations = lsh_rotations(3, 16, 8, generator=_gen(31), device=device)
    q = _x(t=37, seed=32).to(device, dtype)
    k = _x(t=37, seed=33).to(device, dtype).transpose(1, 2).contiguous().transpose(1, 2)
    single = lsh_buckets_from_rotations(q, rotations)
    q_ids, k_ids = lsh_buckets_pair_from_rotations(q, k, rotations)
    assert torch.equal(single, torch.ops.scfa.lsh_buckets(q, rotations))
    assert torch.equal(q_ids, single)
    assert torch.equal(k_ids, torch.ops.scfa.lsh_buckets(k, rotations))
    _assert_matches_reference(q_ids, q.float(), rotations)
    _assert_matches_reference(k_ids, k.float(), rotations)


def test_from_rotations_skip_the_operators_when_eager(device):
    # The operators' Python dispatch costs more host time than the launch
    # (docs/performance-notes.md).
    rotations = lsh_rotations(3, 16, 8, generator=_gen(34), device=device)
    q = _x(t=20, seed=35).to(device)
    with _OpsSeen() as seen:
        lsh_buckets_from_rotations(q, rotations)
        lsh_buckets_pair_from_rotations(q, q * 2, rotations)
    assert not [name for name in seen.names if name.startswith("scfa.")], seen.names
    with _OpsSeen() as seen:
        torch.ops.scfa.lsh_buckets(q, rotations)
    assert "scfa.lsh_buckets.default" in seen.names  # the probe does see operators


def test_from_rotations_compile_to_the_operators():
    rotations = lsh_rotations(3, 16, 8, generator=_gen(36))
    graphs: list[torch.fx.GraphModule] = []

    def keep_graph(gm: torch.fx.GraphModule, example_inputs):
        graphs.append(gm)
        return gm.forward

    def step(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q_ids, k_ids = lsh_buckets_pair_from_rotations(q, k, rotations)
        return q_ids + k_ids + lsh_buckets_from_rotations(k, rotations)

    q, k = _x(t=20, seed=37), _x(t=20, seed=38)
    got = torch.compile(step, fullgraph=True, backend=keep_graph)(q, k)
    assert torch.equal(got, step(q, k))
    # Dynamo records the operator packets (AOT would resolve them to their `.default`).
    targets = {
        str(node.target).removesuffix(".default") for gm in graphs for node in gm.graph.nodes
    }
    assert {"scfa.lsh_buckets_pair", "scfa.lsh_buckets"} <= targets, targets


def test_from_rotations_check_their_inputs():
    rotations = lsh_rotations(3, 16, 8, generator=_gen(39))
    with pytest.raises(ValueError, match="rotations: expected shape"):
        lsh_buckets_from_rotations(_x(h=2), rotations)
    with pytest.raises(ValueError, match="k: expected the shape of q"):
        lsh_buckets_pair_from_rotations(_x(t=8), _x(t=9), rotations)
    with pytest.raises(TypeError, match="rotations: expected float32"):
        lsh_buckets_from_rotations(_x(), rotations.double())


def test_custom_ops_pass_opcheck():
    x = _x(t=20, seed=24)
    rotations = lsh_rotations(3, 16, 6, generator=_gen(25))
    torch.library.opcheck(torch.ops.scfa.lsh_buckets.default, (x, rotations))
    torch.library.opcheck(torch.ops.scfa.lsh_buckets_pair.default, (x, x * 2, rotations))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("n_buckets", [0, 1, 3, 9, -2])
def test_odd_bucket_count_raises(n_buckets):
    with pytest.raises(ValueError, match="n_buckets"):
        lsh_buckets(_x(), n_buckets)
    with pytest.raises(ValueError, match="n_buckets"):
        lsh_buckets_pair(_x(), _x(), n_buckets)


def test_bucket_count_not_an_int_raises():
    with pytest.raises(TypeError, match="n_buckets"):
        lsh_buckets(_x(), 8.0)


@pytest.mark.parametrize("shape", [(4, 16), (2, 4, 3), (1, 2, 3, 4, 16)])
def test_x_not_4d_raises(shape):
    with pytest.raises(ValueError, match=r"x: expected a 4-D tensor"):
        lsh_buckets(torch.randn(shape), 8)


def test_integer_x_raises():
    with pytest.raises(TypeError, match=r"x: expected a floating-point dtype, got torch.int64"):
        lsh_buckets(torch.ones(1, 4, 1, 16, dtype=torch.int64), 8)


def test_not_a_tensor_raises():
    with pytest.raises(TypeError, match=r"x: expected a torch\.Tensor"):
        lsh_buckets([[1.0]], 8)


def test_empty_head_dim_raises():
    with pytest.raises(ValueError, match="head dim"):
        lsh_buckets(torch.randn(1, 4, 2, 0), 8)


def test_pair_shape_mismatch_raises():
    with pytest.raises(ValueError, match=r"k: expected the shape of q \(2, 64, 3, 16\)"):
        lsh_buckets_pair(_x(), _x(t=32), 8)


@pytest.mark.parametrize(
    ("rotations", "exc", "match"),
    [
        (torch.randn(3, 16), ValueError, "rotations: expected shape"),
        (torch.randn(2, 16, 4), ValueError, "rotations: expected shape"),
        (torch.randn(3, 8, 4), ValueError, "rotations: expected shape"),
        (torch.randn(3, 16, 4).double(), TypeError, "rotations: expected float32"),
    ],
)
def test_bad_rotations_raise(rotations, exc, match):
    with pytest.raises(exc, match=match):
        torch.ops.scfa.lsh_buckets(_x(), rotations)


# ---------------------------------------------------------------- the geometry


@pytest.mark.parametrize("n_buckets", [2, 4, 6, 8, 64])
def test_shape_dtype_and_range(n_buckets):
    x = _x()
    ids = _buckets(x, n_buckets, seed=1)
    assert ids.shape == x.shape[:3] and ids.dtype == torch.int32
    assert int(ids.min()) >= 0 and int(ids.max()) < n_buckets


def test_spreads_random_vectors_over_all_buckets():
    ids = _buckets(_x(b=1, t=2048, h=1, d=32), 8, seed=2)
    counts = torch.bincount(ids.flatten().long(), minlength=8)
    assert (counts > 0).all(), counts.tolist()


def test_same_seed_same_buckets_other_seed_differs():
    x = _x()
    assert torch.equal(_buckets(x, 8, seed=3), _buckets(x, 8, seed=3))
    assert not torch.equal(_buckets(x, 8, seed=3), _buckets(x, 8, seed=4))


def test_one_rotation_per_head():
    # The same vectors in every head: only different rotations can make the heads differ.
    x = _x(h=1, t=256).expand(2, 256, 4, 16).contiguous()
    ids = _buckets(x, 8, seed=5)
    for h in range(1, 4):
        assert not torch.equal(ids[:, :, 0], ids[:, :, h]), f"head {h} reuses head 0's rotation"


@pytest.mark.parametrize("factor", [4.0, 0.015625])
def test_scale_invariant(factor):
    # Powers of two scale every product exactly, so not even a near-tie may move.
    x = _x(seed=6)
    assert torch.equal(_buckets(x, 16, seed=7), _buckets(x * factor, 16, seed=7))


@pytest.mark.parametrize("n_buckets", [2, 8, 32])
def test_antipodal_vectors_land_half_way_round(n_buckets):
    x = _x(seed=8)
    ids = _buckets(x, n_buckets, seed=9).long()
    opposite = _buckets(-x, n_buckets, seed=9).long()
    assert torch.equal(opposite, (ids + n_buckets // 2) % n_buckets)


def test_nearby_vectors_mostly_share_a_bucket():
    # Locality: a tiny perturbation rarely crosses a bucket boundary; random vectors often do.
    x = _x(b=1, t=1024, h=2, d=32, seed=10)
    noise = 1e-3 * _x(b=1, t=1024, h=2, d=32, seed=11)
    ids = _buckets(x, 8, seed=12)
    same_near = (ids == _buckets(x + noise, 8, seed=12)).float().mean().item()
    same_random = (ids == _buckets(_x(b=1, t=1024, h=2, d=32, seed=13), 8, seed=12)).float().mean()
    assert same_near > 0.95
    assert same_random.item() < 0.5


def test_half_precision_input_gives_same_ids_as_its_float32_copy():
    x = _x(seed=14).half()
    assert torch.equal(_buckets(x, 8, seed=15), _buckets(x.float(), 8, seed=15))
