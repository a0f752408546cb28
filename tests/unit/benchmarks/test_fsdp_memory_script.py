"""benchmarks/fsdp_memory.py follows the parameter + optimizer bytes over a whole step, not only at the
total's peak: on a plain module under MemTracker the highest sum is the parameters plus AdamW's two moments."""

from __future__ import annotations

import torch
from torch import nn

from tests.conftest import load_benchmark


def test_the_followed_sums_hold_parameters_moments_and_gradients() -> None:
    from torch.distributed._tools.mem_tracker import MemTracker

    bench = load_benchmark("fsdp_memory")
    model = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 4))
    optimizer = torch.optim.AdamW(model.parameters())
    tracker = MemTracker()
    highest = bench.follow_sums(tracker)
    tracker.track_external(model, optimizer)
    with tracker:
        for _ in range(2):
            model(torch.randn(32, 256)).sum().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=False)
            tracker.reset_mod_stats()
    params = sum(p.numel() * 4 for p in model.parameters())
    assert highest["param_opt"] >= 3 * params  # the weights and both moments (plus AdamW's step counters)
    assert highest["state"] >= 4 * params  # and the gradients beside them (kept between steps here)
