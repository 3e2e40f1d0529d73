"""A training step captured once in a CUDA graph and replayed: the step paced by its GPU work.

At B=1 and long sequences a step's kernels are few and long, but each layer of sparse
attention launches about a dozen of them from Python: the host, not the GPU, can set the
step's pace (docs/performance-notes.md). Replaying a captured step costs one launch, so the
time of a graphed step is its GPU work, as for a user who captures the training step.

The recipe is PyTorch's whole-network capture: a few eager steps on a side stream (lazy
initialisation, compilation, autotuning and library plans happen there, outside the capture),
gradients set to None so that the captured backward allocates them in the graph's pool, then
one captured step. Each replay recomputes the gradients from scratch (the same kernels write
the same buffers), and random numbers drawn on the device (QK keep masks) are fresh in each
replay.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

SIDE_STREAM_WARMUP_STEPS = 3


class CapturedStep:
    """Replays of one captured step: calling it replays the graph and returns the loss the
    capture wrote (overwritten by each replay).

    It holds the step function as well as the graph: the graph reads and writes memory by
    address, its own pool and what the step holds from outside it (inputs, parameters,
    optimizer state). Freed, those blocks would go to later allocations and replays would
    read garbage (token ids out of range)."""

    def __init__(self, step: Callable[[], Tensor], graph: torch.cuda.CUDAGraph, loss: Tensor):
        self.step = step
        self.graph = graph
        self.loss = loss

    def __call__(self) -> Tensor:
        self.graph.replay()
        return self.loss


def capture_step(
    step: Callable[[], Tensor], warmup_steps: int = SIDE_STREAM_WARMUP_STEPS
) -> CapturedStep:
    """Run `step` `warmup_steps` times on a side stream, capture one more call, and return
    its replays.

    `step` must begin by setting the gradients to None (so that the captured backward
    allocates them) and return a detached loss. Raises what the capture raises (an
    operation that cannot be captured, running out of memory).
    """
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps: expected an integer >= 1, got {warmup_steps!r}")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup_steps):
            step()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = step()
    return CapturedStep(step, graph, loss)


__all__ = ["SIDE_STREAM_WARMUP_STEPS", "CapturedStep", "capture_step"]
