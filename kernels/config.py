"""Tile sizes, warps and pipeline depth per device, dtype and head dim.

Chosen by measurement (see PERF.md); `override` lets a tuning script try others.

Why on the host and not with `triton.autotune`: the best tiles depend on the mean bucket
size (T / n_buckets), which autotune keys cannot see without reading the bucket ids (a
host sync per call); and autotune benchmarks every candidate on the first call of each new
key, which would land inside a user's timed step or CUDA-graph capture. A table chosen from
host-known values (device, dtype, head dim, T, n_buckets) costs nothing per call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LaunchConfig:
    block_m: int  # query rows per tile
    block_n: int  # key rows per tile
    num_warps: int
    num_stages: int


@dataclass(frozen=True)
class RangeSplit:
    """When a tile's range may be cut into pieces run by separate programs (PERF.md, v7).

    A range whose tiles set the kernel's length alone (the tiles of a large bucket; the
    first key tiles of QK-sparse's kept rows, which every later kept query sees) is cut into
    pieces whose partial results are merged afterwards. Two gates keep the cost (float32
    partials, atomics, a merge pass, a zeroed buffer) where it pays:

    * on the host, only small grids split: `pieces(n_tiles, seq_len)` programs per tile,
      grown in powers of two while the grid stays within `target_programs`, and none below
      `min_seq_len` rows (shorter ranges never dominate a launch);
    * on the device, a range is cut only into pieces of at least
      max(min_tiles, total range tiles / (slots_per_sm * SMs)) tiles: balanced launches
      run whole, a range far longer than a fair share of the work is cut.
    """

    max_pieces: int = 1  # 1: never split
    target_programs: int = 0
    min_tiles: int = 1
    slots_per_sm: int = 8
    min_seq_len: int = 0

    def pieces(self, n_tiles: int, seq_len: int) -> int:
        if seq_len < self.min_seq_len:
            return 1
        pieces = 1
        while pieces * 2 <= self.max_pieces and n_tiles * pieces * 2 <= self.target_programs:
            pieces *= 2
        return pieces

    def slots(self, device: torch.device) -> int:
        """Fair shares of a launch's work: its total range length over this is the shortest
        piece (capped to int32 for the kernels)."""
        return min(self.slots_per_sm * _multiprocessors(device), 2**31 - 1)


def ceil_div(a: int, b: int) -> int:
    """Host-side ceil(a / b) for launch grids: `triton.cdiv` is a constexpr function in newer
    Triton, about 10 us per host call (PERF.md, v10)."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """Host-side `triton.next_power_of_2` (the same cost reason as `ceil_div`)."""
    return 0 if n <= 0 else 1 << (n - 1).bit_length()


@functools.cache
def _multiprocessor_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _multiprocessors(device: torch.device) -> int:
    if device.type != "cuda":
        return 1
    return _multiprocessor_count(
        device.index if device.index is not None else torch.cuda.current_device()
    )


NO_SPLIT = RangeSplit()


@dataclass(frozen=True)
class KernelConfig:
    fwd: LaunchConfig
    dkdv: LaunchConfig
    dq: LaunchConfig
    delta_block_m: int = 128
    # Split pieces of the forward store float32 partial outputs: (pieces, BH, T, D). Its
    # target bounds that buffer: pieces * BH * n_tiles <= target, so at most
    # target * block_m * D * 4 bytes (256 MiB for 128-row tiles at D = 64). The backward's
    # pieces add into one (BH, T, D) buffer per gradient whatever their number.
    fwd_split: RangeSplit = RangeSplit(
        max_pieces=8, target_programs=8192, min_tiles=4, min_seq_len=8192
    )
    dkdv_split: RangeSplit = RangeSplit(
        max_pieces=8, target_programs=16384, min_tiles=4, min_seq_len=8192
    )
    dq_split: RangeSplit = RangeSplit(
        max_pieces=8, target_programs=16384, min_tiles=4, min_seq_len=8192
    )


# Small tiles in the interpreter: tests with T <= 256 still cross many tiles, and cut
# ranges of four tiles or more into pieces of two, so every test runs the pieces and their
# merge as well as whole ranges.
_INTERPRETER_SPLIT = RangeSplit(
    max_pieces=4, target_programs=1 << 30, min_tiles=2, slots_per_sm=1 << 30
)
_INTERPRETER = KernelConfig(
    fwd=LaunchConfig(16, 16, 1, 1),
    dkdv=LaunchConfig(16, 16, 1, 1),
    dq=LaunchConfig(16, 16, 1, 1),
    delta_block_m=16,
    fwd_split=_INTERPRETER_SPLIT,
    dkdv_split=_INTERPRETER_SPLIT,
    dq_split=_INTERPRETER_SPLIT,
)


@dataclass(frozen=True)
class TileTable:
    """The configurations of one GPU generation, by dtype, head dim and mean bucket size."""

    float32: KernelConfig
    head_128: KernelConfig
    large_buckets: KernelConfig  # mean bucket >= 4096 rows (and QK-sparse: one bucket)
    medium_buckets: KernelConfig  # 1024 < mean bucket < 4096 rows
    small_buckets: KernelConfig

    def choose(self, dtype: torch.dtype, head_dim: int, mean_bucket_rows: float) -> KernelConfig:
        if dtype == torch.float32:
            return self.float32
        if head_dim == 128:
            return self.head_128
        if mean_bucket_rows >= 4096:
            return self.large_buckets
        if mean_bucket_rows > 1024:
            return self.medium_buckets
        return self.small_buckets

    def configs(self) -> dict[str, KernelConfig]:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


# Compute capability 9.x (H100, H200), measured on an H100 (PERF.md, v2 and v3 sweeps at
# T=16384): large buckets (and QK-sparse, whose kept rows form one bucket) want big tiles;
# small buckets waste less with small tiles.
def _tiles(fwd: tuple, dkdv: tuple, dq: tuple) -> KernelConfig:
    """A KernelConfig from (block_m, block_n, num_warps, num_stages) per kernel."""
    return KernelConfig(LaunchConfig(*fwd), LaunchConfig(*dkdv), LaunchConfig(*dq))


SM90_TILES = TileTable(
    # dK/dV, v3 sweep: a deeper pipeline, 3% over (64, 64, 4, 2).
    large_buckets=_tiles((128, 128, 4, 2), (32, 128, 4, 3), (128, 32, 4, 5)),
    # Five stages for the gathered loads (v12): below five, Triton 3.6 waits for every copy
    # in flight at the top of each key tile (the row index is itself a load), so nothing
    # overlaps.
    medium_buckets=_tiles((128, 64, 4, 5), (32, 64, 4, 1), (64, 32, 4, 3)),
    small_buckets=_tiles((64, 32, 4, 5), (32, 64, 4, 1), (64, 32, 4, 3)),
    # Head dim 128 (v1 sweep: 64 x 64 tiles, 2 stages; v12: narrower tiles, 5 stages).
    head_128=_tiles((64, 32, 4, 5), (32, 64, 4, 5), (64, 32, 4, 5)),
    float32=_tiles((64, 32, 4, 2), (32, 32, 4, 2), (32, 32, 4, 2)),
)

# Shared memory one block may use (CUDA C Programming Guide, table of compute capabilities).
SHARED_MEMORY_BYTES = {8: 163 * 1024, 9: 227 * 1024}
_HEAD_DIMS = {"float32": 64, "head_128": 128}  # the largest head dim each entry serves
_ELEMENT_BYTES = {"float32": 4}  # other entries serve 2-byte dtypes


def shared_memory_estimate(kind: str, launch: LaunchConfig, head_dim: int, element: int) -> int:
    """An upper bound on the shared memory of one kernel's block: the operand tiles its key
    (or query) loop loads, once per pipeline stage, plus the tiles it keeps for the whole
    loop, all staged in shared memory. Triton stages less (`compile_kernels.py` prints what
    it really uses); the bound keeps a table safe without a GPU to ask."""
    m, n, stages = launch.block_m, launch.block_n, max(launch.num_stages, 1)
    resident, per_stage = {
        "fwd": (m, 2 * n),  # Q kept; K and V per key tile
        "dkdv": (2 * n, 2 * m),  # K and V kept; Q and dO per query tile
        "dq": (2 * m, 2 * n),  # Q and dO kept; K and V per key tile
    }[kind]
    return element * head_dim * (resident + stages * per_stage)


def _fit_stages(table: TileTable, limit: int) -> TileTable:
    """`table` with each kernel's pipeline made shallower until its estimate fits `limit`."""
    fitted = {}
    for name, cfg in table.configs().items():
        head_dim, element = _HEAD_DIMS.get(name, 64), _ELEMENT_BYTES.get(name, 2)
        launches = {}
        for kind in ("fwd", "dkdv", "dq"):
            launch = getattr(cfg, kind)
            while (
                launch.num_stages > 1
                and shared_memory_estimate(kind, launch, head_dim, element) > limit
            ):
                launch = dataclasses.replace(launch, num_stages=launch.num_stages - 1)
            launches[kind] = launch
        fitted[name] = dataclasses.replace(cfg, **launches)
    return TileTable(**fitted)


# Compute capability 8.x (A100: 163 KB of shared memory a block, not measured here): the
# same tiles with pipelines shallow enough for the estimate to fit.
SM80_TILES = _fit_stages(SM90_TILES, SHARED_MEMORY_BYTES[8])
# By the major compute capability; other generations get the conservative table.
TILE_TABLES = {8: SM80_TILES, 9: SM90_TILES}


@functools.cache
def _capability_major(index: int) -> int:
    return torch.cuda.get_device_capability(index)[0]


def tile_table(device: torch.device) -> TileTable:
    """The table for a CUDA device's compute capability."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    return TILE_TABLES.get(_capability_major(index), SM80_TILES)


_override: KernelConfig | None = None
_split_override: dict[str, RangeSplit] = {}


def select(
    device: torch.device, dtype: torch.dtype, head_dim: int, mean_bucket_rows: float
) -> KernelConfig:
    """Launch configuration; `mean_bucket_rows` = T / number of buckets (T for QK-sparse)."""
    chosen = _select(device, dtype, head_dim, mean_bucket_rows)
    if _split_override:
        chosen = dataclasses.replace(chosen, **_split_override)
    return chosen


def _select(
    device: torch.device, dtype: torch.dtype, head_dim: int, mean_bucket_rows: float
) -> KernelConfig:
    if _override is not None:
        return _override
    if device.type != "cuda":
        return _INTERPRETER
    return tile_table(device).choose(dtype, head_dim, mean_bucket_rows)


@contextlib.contextmanager
def override(config: KernelConfig) -> Iterator[None]:
    """Use `config` for every launch inside the block (tuning experiments)."""
    global _override
    previous, _override = _override, config
    try:
        yield
    finally:
        _override = previous


@contextlib.contextmanager
def override_split(
    split: RangeSplit | None = None,
    *,
    fwd: RangeSplit | None = None,
    dkdv: RangeSplit | None = None,
    dq: RangeSplit | None = None,
) -> Iterator[None]:
    """Cut ranges by `split` (or per kernel: `fwd`, `dkdv`, `dq`) in every launch inside the
    block, whatever the tiles (probes that time the kernels with and without pieces, tests
    of either path)."""
    global _split_override
    chosen = {"fwd": fwd or split, "dkdv": dkdv or split, "dq": dq or split}
    previous = _split_override
    _split_override = {f"{k}_split": v for k, v in chosen.items() if v is not None}
    try:
        yield
    finally:
        _split_override = previous
