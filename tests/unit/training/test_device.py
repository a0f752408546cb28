"""A process whose GPU does not exist is refused with what to do, not with torch's 'invalid device ordinal'."""

from __future__ import annotations

import pytest
import torch

from tunelab.config.schema import TrainConfig
from tunelab.errors import TunelabError
from tunelab.training.device import select_device


def test_more_processes_than_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(TunelabError, match=r"process 1 of this machine needs GPU 1, but only 1 is visible.*--nproc"):
        select_device(TrainConfig(device="auto"))


def test_cuda_asked_for_where_there_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TunelabError, match="train.device: cuda, but torch sees no CUDA GPU.*train.device: cpu"):
        select_device(TrainConfig(device="cuda"))
    assert select_device(TrainConfig(device="auto", num_threads=1)).type == "cpu"
