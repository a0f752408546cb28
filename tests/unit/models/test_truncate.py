"""`model.num_blocks`: the first N blocks of any backbone's LayerStack (BERT's `encoder.layer`, GPT-2's `h`: found
by the stack, not by name), saved as a directory transformers loads as an N-layer model; N out of range refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForSequenceClassification, GPT2Config, GPT2Model

from tests.conftest import make_tiny_bert
from tunelab.config.schema import HeadConfig, ModelConfig
from tunelab.errors import ModelError
from tunelab.models import build_task_model
from tunelab.models.task_model import TaskModel
from tunelab.models.truncate import check_num_blocks, keep_first_blocks


@pytest.fixture(scope="module")
def bert3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert3"), layers=3)


def build(model_dir: Path, num_blocks: int | None, head: str = "native") -> TaskModel:
    torch.manual_seed(0)
    return build_task_model(ModelConfig(name=str(model_dir), num_blocks=num_blocks), HeadConfig(type=head),
                            problem_type="single_label_classification", label_names=["neg", "pos"], num_outputs=2)


def inputs() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.tensor([[2, 5, 9, 12, 3], [2, 7, 3, 0, 0]]),
            "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])}


@pytest.mark.parametrize("n", [1, 2])
def test_cut_model_keeps_the_first_blocks_and_saves_what_transformers_loads(bert3: Path, tmp_path: Path, n: int) -> None:
    full, cut = build(bert3, None), build(bert3, n)
    assert (full.layer_stack.num_blocks, cut.layer_stack.num_blocks) == (3, n)
    assert cut.layer_stack.blocks_path == "network.bert.encoder.layer"
    full_state = full.state_dict()
    for name, tensor in cut.state_dict().items():  # the kept blocks are the pre-trained ones, unchanged
        assert torch.equal(tensor, full_state[name])
    assert not any(name.startswith(f"network.bert.encoder.layer.{n}.") for name in cut.state_dict())
    cut.eval()
    cut.network.save_pretrained(tmp_path / "saved")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    assert loaded.config.num_hidden_layers == n and len(loaded.bert.encoder.layer) == n
    with torch.no_grad():
        assert torch.allclose(loaded(**inputs()).logits, cut(**inputs()), atol=1e-6)
    # and tunelab reads it back as a model of n blocks, with no num_blocks given (a 1-block stack included)
    assert build(tmp_path / "saved", None).layer_stack.num_blocks == n


def test_cut_with_a_tunelab_head(bert3: Path, tmp_path: Path) -> None:
    cut = build(bert3, 2, head="linear")
    cut.network.save_pretrained(tmp_path / "saved")
    assert AutoModel.from_pretrained(tmp_path / "saved").config.num_hidden_layers == 2


def test_the_cut_follows_the_layer_stack_not_a_name_pattern(tmp_path: Path) -> None:
    """GPT-2 names its blocks `h` and its depth `n_layer`: the same code cuts it."""
    torch.manual_seed(0)
    network = GPT2Model(GPT2Config(vocab_size=50, n_embd=16, n_layer=4, n_head=2, n_positions=32))
    model = keep_first_blocks(TaskModel(network), 3, "tiny-gpt2")
    assert model.layer_stack.blocks_path == "network.h" and model.layer_stack.num_blocks == 3
    network.save_pretrained(tmp_path / "gpt2")
    reloaded = AutoModel.from_pretrained(tmp_path / "gpt2")
    assert reloaded.config.n_layer == 3 and len(reloaded.h) == 3


def test_out_of_range_is_refused_naming_the_range(bert3: Path) -> None:
    with pytest.raises(ModelError, match="model.num_blocks: 4 is out of range: .* has 3 blocks; choose 1 to 3"):
        build(bert3, 4)
    with pytest.raises(ModelError, match="model.num_blocks: 5 is out of range"):
        check_num_blocks(bert3, 5)
    check_num_blocks(bert3, 3)  # within range: nothing to say
