"""Distillation's loss against a hand computation, how it joins a Plan and a train step (alpha 0: the task's loss,
alpha 1: the soft targets alone), its section's rules, and the teacher folder's checks."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from tunelab.catalog import parse_config
from tunelab.config.schema import OptimConfig, StrategyConfig
from tunelab.data.encoding import Batch
from tunelab.errors import ConfigError
from tunelab.serving.teacher_logits import check_teacher
from tunelab.strategies.distill import distill_term
from tunelab.strategies.distill_loss import soft_target_loss
from tunelab.strategies.registry import compile_strategy
from tunelab.training.step import train_step


def by_hand_softmax(student: list[list[float]], teacher: list[list[float]], t: float) -> float:
    """T^2 * mean over examples of sum_c p_c (log p_c - log q_c), p = softmax(teacher / T), q = softmax(student / T)."""
    def softmax(row: list[float]) -> list[float]:
        exps = [math.exp(v / t) for v in row]
        return [e / sum(exps) for e in exps]
    total = 0.0
    for s_row, t_row in zip(student, teacher):
        p, q = softmax(t_row), softmax(s_row)
        total += sum(pc * (math.log(pc) - math.log(qc)) for pc, qc in zip(p, q))
    return t * t * total / len(student)


def by_hand_sigmoid(student: list[list[float]], teacher: list[list[float]], t: float) -> float:
    """T^2 * mean over every (example, class) of KL(Bernoulli(sigmoid(teacher / T)) || Bernoulli(sigmoid(student / T)))."""
    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v / t))
    terms = [sig(tv) * math.log(sig(tv) / sig(sv)) + (1 - sig(tv)) * math.log((1 - sig(tv)) / (1 - sig(sv)))
             for s_row, t_row in zip(student, teacher) for sv, tv in zip(s_row, t_row)]
    return t * t * sum(terms) / len(terms)


STUDENT = [[1.0, -0.5, 2.0], [0.3, 0.2, -1.0]]
TEACHER = [[2.5, -1.0, 0.5], [-0.7, 1.1, 0.4]]


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_target_loss_is_the_hand_computed_kl_times_t_squared(temperature: float) -> None:
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    assert float(soft_target_loss(s, t, temperature)) == pytest.approx(by_hand_softmax(STUDENT, TEACHER, temperature), rel=1e-5)
    assert float(soft_target_loss(s, t, temperature, "sigmoid")) == \
        pytest.approx(by_hand_sigmoid(STUDENT, TEACHER, temperature), rel=1e-5)
    assert float(soft_target_loss(t, t, temperature)) == pytest.approx(0.0, abs=1e-6)
    assert float(soft_target_loss(t, t, temperature, "sigmoid")) == pytest.approx(0.0, abs=1e-6)


def test_t_squared_keeps_the_soft_gradient_at_the_size_of_the_hard_one() -> None:
    """Hinton et al.: the gradient of KL at temperature T shrinks as 1/T^2 for large T; the T^2 factor undoes it."""
    t = torch.tensor(TEACHER)
    norms = []
    for temperature in (8.0, 16.0, 32.0):
        s = torch.tensor(STUDENT, requires_grad=True)
        soft_target_loss(s, t, temperature).backward()
        norms.append(float(s.grad.norm()))
    assert norms[0] == pytest.approx(norms[1], rel=0.02) == pytest.approx(norms[2], rel=0.02)


class Fixed(nn.Module):
    """A model whose logits are its one parameter: the step's loss is then a function we can write down."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(STUDENT))

    def forward(self, **_: torch.Tensor) -> torch.Tensor:
        return self.logits


def step_loss(alpha: float, temperature: float, class_weight: torch.Tensor | None = None) -> tuple[float, torch.Tensor]:
    """One train step of `Fixed` under `strategy.distill` (teacher rows picked by the batch's indices)."""
    config = StrategyConfig(name="full", distill={"teacher": "unused", "temperature": temperature, "alpha": alpha})
    model = Fixed()
    plan = compile_strategy(config, _tiny_task_model(model), OptimConfig(), 1)
    table = torch.tensor([[0.0, 0.0, 0.0], *TEACHER[::-1]])  # examples 0, 1, 2 of the split; the batch holds 2 and 1
    distill_term(plan).set_teacher(table, "softmax")
    batch = Batch(inputs={}, targets=torch.tensor([2, 0]), indices=torch.tensor([1, 2]))
    loss = train_step(model, batch, nn.CrossEntropyLoss(weight=class_weight), scale=1.0,
                      autocast=contextlib.nullcontext(), loss_terms=plan.loss_terms, output_terms=plan.output_terms,
                      task_weight=plan.task_loss_weight)
    return loss, model.logits.grad


def _tiny_task_model(model: nn.Module):
    """compile_strategy needs a TaskModel's LayerStack; `full` trains every parameter of a tiny two-block stack."""
    from tunelab.models.task_model import TaskModel

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])
            self.out = model
    return TaskModel(Net())


@pytest.mark.parametrize("weight", [None, torch.tensor([1.0, 2.0, 0.5])])
def test_train_step_mixes_the_labels_and_the_teacher_by_alpha(weight: torch.Tensor | None) -> None:
    s, targets = torch.tensor(STUDENT), torch.tensor([2, 0])
    task = float(nn.CrossEntropyLoss(weight=weight)(s, targets))
    soft = by_hand_softmax(STUDENT, [TEACHER[1], TEACHER[0]], 2.0)  # the batch's examples 1, 2: rows 1, 2 of the table
    assert step_loss(0.0, 2.0, weight)[0] == pytest.approx(task, rel=1e-5)       # the labels alone (class weights too)
    assert step_loss(1.0, 2.0, weight)[0] == pytest.approx(soft, rel=1e-5)       # the teacher alone
    assert step_loss(0.3, 2.0, weight)[0] == pytest.approx(0.3 * soft + 0.7 * task, rel=1e-5)
    plain = Fixed()
    nn.CrossEntropyLoss(weight=weight)(plain.logits, targets).backward()
    assert torch.allclose(step_loss(0.0, 2.0, weight)[1], plain.logits.grad)   # alpha 0: the label run's gradient


def test_section_resolves_with_defaults_beside_any_strategy_and_reports_every_problem() -> None:
    for name in ("full", "partial", "lora", "head"):
        extra = {"freeze_blocks": 1} if name == "partial" else {}
        config = parse_config({"data": {"train": "x.csv"}, "strategy": {"name": name, "distill": {"teacher": "t"}, **extra}})
        assert (config.strategy.distill.temperature, config.strategy.distill.alpha) == (2.0, 0.5)
    with pytest.raises(ConfigError) as err:
        parse_config({"data": {"train": "x.csv"}, "task": "token_classification",
                      "strategy": {"name": "full", "distill": {"temperature": -1, "alpha": 1.5, "beta": 1}}})
    message = str(err.value)
    for line in ("strategy.distill.teacher: required key is missing", "strategy.distill.temperature: Input should be "
                 "greater than 0", "strategy.distill.alpha: Input should be less than or equal to 1",
                 "strategy.distill.beta: unknown key", "strategy.distill: distillation learns from a teacher's class "
                 "scores, for tasks classification, multilabel, image_classification; not task token_classification"):
        assert line in message


def test_check_teacher_reads_the_run_folder_and_compares_labels(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "config.yaml").write_text("task: classification\n")
    (run / "labels.json").write_text(json.dumps({"task": "classification", "labels": ["a", "b", "c"]}))
    assert check_teacher(run, "classification", ["c", "b", "a"]) == ["a", "b", "c"]  # one set in another order: taken
    with pytest.raises(ConfigError, match="is a classification run and this run is multilabel"):
        check_teacher(run, "multilabel")
    with pytest.raises(ConfigError, match=r"only the teacher's: \['c'\]; only this data's: \['d'\]"):
        check_teacher(run, "classification", ["a", "b", "d"])
