"""`tunelab export --merge`: a plain transformers directory with the adapter model's predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tunelab.artifacts.model_io import load_run
from tunelab.errors import TunelabError
from tunelab.export import export_merged

INPUT = torch.tensor([[2, 5, 9, 12, 7, 3], [2, 6, 10, 3, 0, 0]])
MASK = (INPUT != 0).long()


@pytest.mark.parametrize("lora", [{}, {"dora": True}, {"target_types": ["Linear", "Embedding"], "target_modules": []}])
def test_merged_export_loads_without_peft_and_predicts_the_same(lora: dict, adapter_run, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    run_dir = adapter_run({"name": "lora", "lora": {"rank": 4, **lora}})
    with torch.no_grad():
        expected = load_run(run_dir).model.eval()(INPUT, MASK)
    out = tmp_path / "merged"
    check = export_merged(run_dir, out)
    assert check["max_abs_logit_diff"] < 1e-4
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").is_file()
    plain = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert "lora" not in json.dumps([n for n, _ in plain.named_parameters()])
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=INPUT, attention_mask=MASK).logits, expected, atol=1e-5, rtol=1e-5)


def test_export_of_a_tunelab_head_keeps_the_head(adapter_run, tmp_path: Path) -> None:
    run_dir = adapter_run({"name": "lora"}, head="linear")
    out = tmp_path / "merged"
    export_merged(run_dir, out)
    assert (out / "tunelab_head.safetensors").is_file()


def test_export_refuses_a_non_empty_folder(adapter_run, tmp_path: Path) -> None:
    run_dir = adapter_run({"name": "lora"})
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    with pytest.raises(TunelabError, match="not empty"):
        export_merged(run_dir, tmp_path / "taken")
