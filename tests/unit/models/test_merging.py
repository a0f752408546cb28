"""Weight-space merging against hand computations: the weighted mean, task arithmetic, TIES's trim / elect /
disjoint mean on a worked example, heads averaged, and a model merged with itself is itself."""

from __future__ import annotations

import pytest
import torch

from tunelab.models.merging import (WeightSpace, disjoint_mean, elect_sign, linear_merge, split_names,
                                    task_arithmetic, ties_merge, ties_vector, trim)

T = torch.tensor


def _space(base: dict, runs: list[dict]) -> WeightSpace:
    """`w` is a backbone tensor (merged), `head` a head tensor (averaged), `ids` an integer buffer (fixed)."""
    return WeightSpace.from_names(base, runs, merged=["w"], averaged=["head"], fixed=["ids"])


BASE = {"w": T([[1.0, 1.0], [1.0, 1.0]]), "head": T([9.0]), "ids": T([0, 1])}
RUN1 = {"w": T([[1.0, 2.0], [3.0, 4.0]]), "head": T([1.0]), "ids": T([0, 1])}
RUN2 = {"w": T([[3.0, 2.0], [1.0, 0.0]]), "head": T([3.0]), "ids": T([0, 1])}


def test_linear_is_the_weighted_mean_of_every_tensor() -> None:
    merged = linear_merge(_space(BASE, [RUN1, RUN2]), [0.25, 0.75])
    assert torch.equal(merged["w"], T([[2.5, 2.0], [1.5, 1.0]]))
    assert torch.equal(merged["head"], T([2.5]))        # the head: the same weights, never the base's
    assert torch.equal(merged["ids"], T([0, 1]))


def test_task_arithmetic_adds_the_scaled_sum_of_task_vectors_to_the_base() -> None:
    # tau1 = [[0, 1], [2, 3]], tau2 = [[2, 1], [0, -1]]; sum [[2, 2], [2, 2]]; base + 0.5 * sum
    merged = task_arithmetic(_space(BASE, [RUN1, RUN2]), 0.5)
    assert torch.equal(merged["w"], T([[2.0, 2.0], [2.0, 2.0]]))
    assert torch.equal(merged["head"], T([2.0]))        # heads: the plain mean, not base + lambda * sum
    assert torch.equal(task_arithmetic(_space(BASE, [RUN1, RUN2]), 1.0)["w"], T([[3.0, 3.0], [3.0, 3.0]]))


# A worked TIES example: three task vectors of 5 entries, density 0.6 keeps the 3 largest of each.
TAUS = T([[0.5, -0.1, 0.3, 0.0, -0.8],
          [-0.4, 0.2, 0.1, 0.6, -0.25],
          [0.2, -0.3, -0.05, 0.7, 0.1]])
TRIMMED = T([[0.5, 0.0, 0.3, 0.0, -0.8],
             [-0.4, 0.0, 0.0, 0.6, -0.25],
             [0.2, -0.3, 0.0, 0.7, 0.0]])
# column sums 0.3, -0.3, 0.3, 1.3, -1.05: signs + - + + -
SIGNS = T([1.0, -1.0, 1.0, 1.0, -1.0])
# agreeing values: (0.5, 0.2) -> 0.35; (-0.3); (0.3); (0.6, 0.7) -> 0.65; (-0.8, -0.25) -> -0.525
MERGED = T([0.35, -0.3, 0.3, 0.65, -0.525])


def test_ties_trim_elect_and_disjoint_mean_on_a_worked_example() -> None:
    trimmed = trim(TAUS, 0.6)
    assert torch.equal(trimmed, TRIMMED)
    assert torch.equal(elect_sign(trimmed), SIGNS)
    assert torch.allclose(disjoint_mean(trimmed, SIGNS), MERGED)
    assert torch.allclose(ties_vector(TAUS, 0.6), MERGED)


def test_ties_adds_lambda_times_the_merged_vector_to_the_base() -> None:
    base = {"w": torch.ones(5), "head": T([0.0]), "ids": T([1])}
    runs = [{"w": torch.ones(5) + tau, "head": T([float(i)]), "ids": T([1])} for i, tau in enumerate(TAUS)]
    merged = ties_merge(_space(base, runs), 0.6, 2.0)
    assert torch.allclose(merged["w"], torch.ones(5) + 2.0 * MERGED)
    assert torch.allclose(merged["head"], T([1.0]))   # heads: the mean of 0, 1, 2


def test_a_zero_mass_entry_takes_the_majority_sign_and_keeps_nothing() -> None:
    trimmed = T([[1.0, 0.0, 0.5], [-1.0, 0.0, 0.5]])
    signs = elect_sign(trimmed)        # sums 0, 0, 1: the whole sum is positive
    assert torch.equal(signs, T([1.0, 1.0, 1.0]))
    assert torch.equal(disjoint_mean(trimmed, signs), T([1.0, 0.0, 0.5]))   # 0 where no value agrees


def test_trim_keeps_at_least_one_entry_and_everything_at_density_one() -> None:
    assert torch.equal(trim(TAUS, 1.0), TAUS)
    assert torch.equal(trim(T([[0.1, -2.0, 0.3]]), 0.01), T([[0.0, -2.0, 0.0]]))
    with pytest.raises(ValueError):
        trim(TAUS, 0.0)


def test_a_run_merged_with_itself_is_itself() -> None:
    space = _space(BASE, [RUN1, RUN1])
    for merged in (linear_merge(space, [0.3, 0.7]), task_arithmetic(space, 0.5), ties_merge(space, 1.0, 1.0)):
        assert torch.allclose(merged["w"], RUN1["w"]) and torch.allclose(merged["head"], RUN1["head"])


def test_the_head_is_averaged_and_the_backbone_merged(build_tiny) -> None:
    model = build_tiny("native")
    merged, averaged, fixed = split_names(model)
    assert "network.classifier.weight" in averaged and "network.bert.pooler.dense.weight" in averaged
    assert "network.bert.embeddings.word_embeddings.weight" in merged
    assert any(".encoder.layer.1." in name for name in merged)
    assert not set(merged) & set(averaged)
    assert set(merged) | set(averaged) | set(fixed) == set(model.state_dict())
