"""Long ranges cut into pieces (config.RangeSplit): the pieces and their merge are exact.

Every other kernel test runs with the interpreter's default split (ranges of two tiles or
more are cut); here the split is forced in both directions, on patterns whose ranges are
long (one bucket, dense causal; few buckets; QK-sparse), and checked against the reference.
A mirror of the kernels' piece arithmetic asserts that each case really splits.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from scfa_kernels import config
from scfa_kernels.plan import (
    hash_plan,
    key_tile_ranges,
    key_tile_ranges_torch,
    qk_plan,
    query_tile_ranges,
    query_tile_ranges_torch,
)
from scfa_kernels.testing import (
    SparsityMask,
    check_backward,
    check_forward,
    make_qkv,
    random_hash,
    random_keep,
)

pytestmark = pytest.mark.slow


def _live_pieces(n_range: torch.Tensor, max_pieces: int, piece_tiles: int) -> torch.Tensor:
    """Mirror of `_triton_common.range_piece`: non-empty pieces of each range."""
    n_pieces = torch.clamp(n_range // piece_tiles, min=1, max=max_pieces)
    per = torch.clamp((n_range + n_pieces - 1) // n_pieces, min=1)
    return (n_range + per - 1) // per


def _plan(pattern: SparsityMask):
    """The plan of a test pattern: hash ids (as many buckets as the ids use) or keep masks."""
    if pattern.kind == "hash":
        return hash_plan(pattern.a, pattern.c, int(max(pattern.a.max(), pattern.c.max())) + 1)
    return qk_plan(pattern.a, pattern.c)


def _most_pieces(pattern: SparsityMask, cfg: config.KernelConfig, split: config.RangeSplit) -> int:
    """The most pieces any forward, dK/dV or dQ tile range is cut into."""
    plan = _plan(pattern)
    most = 0
    for launch, ranges, block in (
        (cfg.fwd, query_tile_ranges_torch, "n"),
        (cfg.dq, query_tile_ranges_torch, "n"),
        (cfg.dkdv, key_tile_ranges_torch, "m"),
    ):
        r = ranges(plan, launch.block_m, launch.block_n)
        tile = launch.block_n if block == "n" else launch.block_m
        n_range = (torch.clamp(r.end.long() - r.start.long(), min=0) + tile - 1) // tile
        most = max(most, int(_live_pieces(n_range, split.max_pieces, split.min_tiles).max()))
    return most


def _forced(device: str, dtype: torch.dtype, d: int, split: config.RangeSplit):
    base = config.select(torch.device(device), dtype, d, 1.0)
    return dataclasses.replace(base, fwd_split=split, dkdv_split=split, dq_split=split)


def _always(max_pieces: int, min_tiles: int) -> config.RangeSplit:
    """Split every range of at least 2 * min_tiles tiles, whatever the grid and the work."""
    return config.RangeSplit(max_pieces, 1 << 30, min_tiles, slots_per_sm=1 << 30)


SPLITS = {
    "2 pieces": _always(2, 1),
    "8 pieces": _always(8, 1),
    "4 pieces of >= 3 tiles": _always(4, 3),
}


def _patterns(device: str, b: int, t: int, h: int) -> dict[str, SparsityMask]:
    zeros = torch.zeros(b, t, h, dtype=torch.int64, device=device)
    return {
        "one bucket": SparsityMask("hash", zeros, zeros),
        "2 buckets": random_hash(b, t, h, 2, device, seed=t),
        "qk drop 0.3": random_keep(b, t, h, 0.3, device, seed=t),
    }


@pytest.mark.parametrize("split_name", list(SPLITS))
@pytest.mark.parametrize("pattern_name", ["one bucket", "2 buckets", "qk drop 0.3"])
def test_split_ranges_match_reference(device, split_name, pattern_name):
    # The GPU's tiles are larger: ranges of 2 x 3 tiles need longer sequences there.
    b, t, h, d = 1, 200 if device == "cpu" else 1000, 2, 16
    dtype = torch.float16 if device == "cpu" else torch.bfloat16
    split = SPLITS[split_name]
    pattern = _patterns(device, b, t, h)[pattern_name]
    cfg = _forced(device, dtype, d, split)
    assert _most_pieces(pattern, cfg, split) >= 2, "the case must split some range"
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed=11)
    with config.override(cfg):
        check_forward(pattern, q, k, v)
        check_backward(pattern, q, k, v, seed=11)


@pytest.mark.parametrize("pattern_name", ["one bucket", "2 buckets", "qk drop 0.3"])
def test_whole_ranges_match_reference(device, pattern_name):
    """The unsplit path (the only one large GPU grids take)."""
    b, t, h, d = 2, 130, 1, 32
    dtype = torch.float32
    pattern = _patterns(device, b, t, h)[pattern_name]
    q, k, v = make_qkv(b, t, h, d, dtype, device, seed=12)
    with config.override(_forced(device, dtype, d, config.NO_SPLIT)):
        check_forward(pattern, q, k, v)
        check_backward(pattern, q, k, v, seed=12)


def test_split_and_whole_agree_on_stranded_rows(device):
    """Queries that see nothing give exactly 0 and zero gradients, split or not."""
    b, t, h, d = 1, 96, 2, 16
    keep = torch.rand(b, t, h, generator=torch.Generator().manual_seed(3)) > 0.5
    keep = keep.to(device)
    pattern = SparsityMask("qk", keep, keep)
    q, k, v = make_qkv(b, t, h, d, torch.float32, device, seed=13)
    for split in (SPLITS["8 pieces"], config.NO_SPLIT):
        with config.override(_forced(device, torch.float32, d, split)):
            out = check_forward(pattern, q, k, v)
            dq = check_backward(pattern, q, k, v, seed=13)[0]
        dropped = ~keep
        assert torch.count_nonzero(out[dropped]) == 0
        assert torch.count_nonzero(dq[dropped]) == 0


@pytest.mark.parametrize(
    ("n_tiles", "expected"), [(1, 8), (1024, 8), (2048, 4), (4096, 2), (8192, 1), (10**6, 1)]
)
def test_pieces_grow_only_for_small_grids(n_tiles, expected):
    split = config.RangeSplit(max_pieces=8, target_programs=8192, min_tiles=8, min_seq_len=8192)
    assert split.pieces(n_tiles, 16384) == expected
    assert split.pieces(n_tiles, 4096) == 1  # short sequences never split
    assert config.NO_SPLIT.pieces(n_tiles, 16384) == 1


def _zero_word(device: str) -> torch.Tensor:
    return torch.zeros(1, dtype=torch.int32, device=device)


@pytest.mark.parametrize("pattern_name", ["one bucket", "2 buckets", "qk drop 0.3"])
def test_range_kernels_count_the_work(device, pattern_name):
    """The total range length the kernels size pieces from (`piece_length`) is the sum of
    the tile ranges' lengths, for query tiles (key ranges) and key tiles (query ranges)."""
    b, t, h = 2, 150, 3
    pattern = _patterns(device, b, t, h)[pattern_name]
    plan = _plan(pattern)
    for bm, bn in ((16, 32), (32, 16)):
        for counted, reference, block in (
            (query_tile_ranges(plan, bm, bn, _zero_word(device)), query_tile_ranges_torch, bn),
            (key_tile_ranges(plan, bm, bn, _zero_word(device)), key_tile_ranges_torch, bm),
        ):
            r = reference(plan, bm, bn)
            tiles = (torch.clamp(r.end.long() - r.start.long(), min=0) + block - 1) // block
            assert counted.work is not None
            assert int(counted.work.item()) == int(tiles.sum()) > 0


@pytest.mark.parametrize(
    ("n_range", "max_pieces", "min_tiles", "live"),
    [
        (0, 4, 1, 0),
        (1, 4, 1, 1),
        (4, 4, 1, 4),
        (9, 4, 1, 3),
        (9, 4, 3, 3),
        (5, 4, 3, 1),
        (6, 4, 3, 2),
        (100, 8, 8, 8),
        (100, 8, 40, 2),
    ],
)
def test_piece_arithmetic(n_range, max_pieces, min_tiles, live):
    """ceil(r / per) pieces of per tiles cover the range: 9 tiles in 4 pieces are 3 of 3;
    no piece is shorter than piece_tiles, so 5 tiles in pieces of >= 3 stay whole."""
    got = _live_pieces(torch.tensor([n_range]), max_pieces, min_tiles)
    assert int(got) == live
