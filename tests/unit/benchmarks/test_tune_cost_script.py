"""benchmarks/tune_cost.py stays runnable: its head and partial configs validate with the budget asked for,
the spaces it writes are tune's default spaces and load back as SPACE.yaml, the commands it times name real
CLI options, and the peer's hp_space draws the same values onto real TrainingArguments fields. No training."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import load_benchmark
import yaml

from tunelab.catalog import parse_config
from tunelab.cli.main import app
from tunelab.orchestration.tune_space import check_space, load_space, suggest



@pytest.fixture(scope="module")
def bench():
    return load_benchmark("tune_cost")


@pytest.fixture()
def args(bench):
    return bench.parse_args(["--limit", "50", "--max-length", "32", "--epochs", "2", "--partial-epochs", "1",
                             "--threads", "1"])


def test_configs_and_spaces(bench, args, tmp_path: Path) -> None:
    inputs = bench.prepare_inputs(args, tmp_path)
    assert [trials for _, _, trials in inputs.values()] == [20, 10]
    head = parse_config(yaml.safe_load(inputs["head"][0].read_text()))
    partial = parse_config(yaml.safe_load(inputs["partial"][0].read_text()))
    assert (head.strategy.name, head.train.epochs, head.optim.lr, head.data.limit) == ("head", 2, 2e-3, 50)
    assert (partial.strategy.name, partial.train.epochs, partial.strategy.freeze_blocks) == ("partial", 1, 4)
    assert head.early_stopping.patience is None and partial.early_stopping.patience is None
    head_space, partial_space = (load_space(inputs[s][1]) for s in ("head", "partial"))
    assert set(head_space) == {"optim.lr", "schedule.warmup_ratio", "optim.weight_decay"}
    assert head_space["optim.lr"].log and head_space["optim.lr"].low == pytest.approx(2e-4)
    assert partial_space["strategy.freeze_blocks"].is_int and "strategy.layerwise_lr_decay" in partial_space
    for strategy in ("head", "partial"):
        check_space(yaml.safe_load(inputs[strategy][0].read_text()), load_space(inputs[strategy][1]), strategy)


def test_commands_name_real_options(bench, tmp_path: Path) -> None:
    import typer

    commands = typer.main.get_command(app).commands
    tune = bench.tune_command(tmp_path / "c.yaml", tmp_path / "s.yaml", 20, "none", tmp_path / "out")
    train = bench._compare_cost().train_command(tmp_path / "c.yaml", tmp_path / "out")
    for command in (tune, train):
        assert command[1:3] == ["-m", "tunelab"]
        options = {o for p in commands[command[3]].params for o in p.opts if o.startswith("--")}
        assert {a for a in command[4:] if a.startswith("--")} <= options
    peer = bench.peer_command(tmp_path / "c.yaml", tmp_path / "s.yaml", 7, "median", "bf16", 2)
    parsed = bench.parse_args(peer[2:])
    assert (parsed.worker, parsed.space, parsed.head_trials, parsed.pruner, parsed.peer_precision, parsed.threads) == \
        (str(tmp_path / "c.yaml"), str(tmp_path / "s.yaml"), 7, "median", "bf16", 2)


def test_peer_space_draws_tunelabs_values(bench, args, tmp_path: Path) -> None:
    import optuna
    from transformers import TrainingArguments

    space = load_space(bench.prepare_inputs(args, tmp_path)["head"][1])
    ours, theirs = (optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0)).ask() for _ in range(2))
    drawn, mapped = suggest(ours, space), bench.peer_hp_space(space)(theirs)
    assert mapped == {bench.PEER_FIELDS[k]: v for k, v in drawn.items()}
    assert set(mapped) <= set(TrainingArguments.__dataclass_fields__)
    with pytest.raises(SystemExit):
        bench.peer_hp_space({**space, "strategy.freeze_blocks": space["optim.lr"]})


def test_peer_arguments_keep_the_warmup_ratio(bench, args, tmp_path: Path) -> None:
    config = parse_config(yaml.safe_load(bench.prepare_inputs(args, tmp_path)["head"][0].read_text()))
    peer = bench.peer_arguments(config, "fp32", str(tmp_path / "peer"))
    assert isinstance(peer.warmup_steps, float) and peer.warmup_steps == 0.1  # Trainer casts trials to this type
    assert not peer.load_best_model_at_end and peer.num_train_epochs == 2 and peer.learning_rate == 2e-3


def test_best_so_far_and_ratios(bench) -> None:
    objective = bench.BestSoFar("macro_f1", maximize=True)
    assert [objective({"eval_macro_f1": v}) for v in (0.5, 0.7, 0.6)] == [0.5, 0.7, 0.7]
    objective.reset()
    assert objective({"eval_macro_f1": 0.2}) == 0.2
    assert bench.trial_counts(["COMPLETE", "PRUNED", "FAIL"]) == {"trials": 2, "pruned": 1, "failed": 1}
    legs = {"head train": {"wall_s": 10.0}, "head tune": {"wall_s": 15.0, "best_validation": 0.9},
            "peer fp32": {"wall_s": 90.0, "best_validation": 0.91}, "partial train": {"wall_s": 10.0},
            "partial tune": {"wall_s": 70.0, "error": "failed"}}
    found = bench.ratios(legs)
    assert found["head tune / head train"] == {"ratio": 1.5, "target": "<= 2.0", "met": True}
    peer = found["peer fp32 / head tune"]
    assert (peer["ratio"], peer["met"], peer["score_met"]) == (6.0, True, False)
    assert "partial tune / partial train" not in found
