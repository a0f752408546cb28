"""Everything a run needs that depends only on the config's task, data, model and seed: done once, shared
by every `run_one` on it (the strategies of a comparison, the trials of a search)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from rich.console import Console
from rich.markup import escape

from tunelab.artifacts.manifest import hash_records
from tunelab.config.schema import HeadConfig, RunConfig
from tunelab.data.encoding import EncodedSplit, unknown_token_rate
from tunelab.data.facts import HIGH_UNKNOWN
from tunelab.data.records import Splits
from tunelab.data.sources import load_data
from tunelab.data.splits import nested_fraction
from tunelab.data.text_augment import make_text_augment
from tunelab.errors import ConfigError, check_all
from tunelab.inference.predict import encode_split
from tunelab.models.task_model import TaskModel
from tunelab.orchestration.init_from import backbone_state, load_backbone
from tunelab.models.loading import hash_model_dir, resolve_model_dir
from tunelab.models.truncate import check_num_blocks
from tunelab.orchestration.distilling import check_distillation
from tunelab.tasks.base import Task
from tunelab.tasks.registry import get_task
from tunelab.strategies.peft.lora import check_quantize_device
from tunelab.training.device import resolve_run_precision, seed_everything, select_device
from tunelab.training.distributed import SINGLE, Distributed, from_environment
from tunelab.training.snapshot import load_rng_state, rng_state

__all__ = ["Prepared", "prepare", "SPLITS", "warn_unknown_tokens"]

SPLITS = ("train", "validation", "test")
# what a prepared run fixed: a run_one config must agree on these (the rest, strategy, optimisation,
# schedule, epochs, output, is free; train.seed too while the split seed stays, and data.train_fraction
# of a prepared run on the whole training split)
_FIXED = ("model", "task")
_FIXED_TRAIN = ("device", "num_threads", "distributed")
_MODEL_TEMPLATES = 4  # base models kept in memory per prepared run (one per seed of a comparison)
UNKNOWN_WARN_RATE = HIGH_UNKNOWN  # data/facts.py says why


@dataclass
class Prepared:
    config: RunConfig                  # as resolved: the precision that runs on this device
    task: Task
    device: torch.device
    splits: Splits
    label_names: list[str]
    data_hashes: dict[str, str]
    model_dir: Path
    base_model_hash: str
    tokenizer: Any                     # the task's preprocessor (tokenizer, image preprocessor)
    encoded: dict[str, EncodedSplit]
    declared_head: HeadConfig           # the head as the config gave it (`auto` settles per strategy)
    unknown_token_rates: dict[str, Optional[float]] = field(default_factory=dict)  # per split; None: not counted
    # base models built so far, by the RNG state they were built from, shared by every `for_config` of this run
    templates: dict[str, tuple[TaskModel, Any]] = field(default_factory=dict, repr=False)
    # the forgetting meter's base-model features on its reference set, by reference and backbone weights: the
    # rows of a comparison start from one backbone, so its side of the meter is computed once
    base_features: dict[str, Any] = field(default_factory=dict, repr=False)
    # model.init_from: the earlier run's embeddings and blocks, loaded over every model built (its head is not)
    init_state: Optional[dict[str, torch.Tensor]] = field(default=None, repr=False)
    dist: Distributed = SINGLE         # this process's rank and world under torchrun

    @property
    def max_length(self) -> int:
        """Tokens per example after truncation (a multi-task run: its tasks' largest)."""
        return self.config.data.max_length  # type: ignore[union-attr]

    def starting_from(self, run_dir: Optional[Path]) -> "Prepared":
        """This prepared run with its models starting from the backbone of the run at `run_dir` (None: the
        base), as `model.init_from` says: a task sequence prepares each task once and moves the start."""
        model = self.config.model.model_copy(update={"init_from": None if run_dir is None else str(run_dir)})
        config = self.config.model_copy(update={"model": model})
        state = None if run_dir is None else backbone_state(run_dir, self.config)
        return dataclasses.replace(self, config=config, init_state=state)

    def for_config(self, config: Optional[RunConfig] = None) -> "Prepared":
        """This prepared run for `config` (default: the prepared one) with this device's precision, and the
        training split cut to its `data.train_fraction`; refused when `config` changes what was prepared
        (model, task, head, data, split seed, device), naming the key."""
        if config is None:
            return self
        self._check_fixed(config)
        settled, _ = resolve_run_precision(self.settled_head(config), self.device)
        if settled.data.train_fraction == self.config.data.train_fraction:
            return dataclasses.replace(self, config=settled)
        keep = nested_fraction(self.splits.train, settled.data.train_fraction, seed=settled.split_seed,
                               label_kind=self.task.label_kind)
        train = [self.splits.train[i] for i in keep]
        return dataclasses.replace(self, config=settled, splits=dataclasses.replace(self.splits, train=train),
                                   data_hashes={**self.data_hashes, "train": hash_records(train)},
                                   encoded={**self.encoded, "train": self.encoded["train"].select(keep)})

    def settled_head(self, config: RunConfig) -> RunConfig:
        """`config` with its head settled for its strategy on this backbone (Task.settle_head)."""
        return _settled(config, self.task, self.model_dir)

    def _check_fixed(self, config: RunConfig) -> None:
        changed = [k for k in _FIXED if getattr(config, k) != getattr(self.config, k)]
        if self.settled_head(config).head != self.task.settle_head(self.declared_head, config.strategy.name,
                                                                   self.model_dir):
            changed.append("head")
        changed += [f"train.{k}" for k in _FIXED_TRAIN if getattr(config.train, k) != getattr(self.config.train, k)]
        ours = self.config.data.model_copy(update={"train_fraction": 1.0, "split_seed": None})
        if config.data.model_copy(update={"train_fraction": 1.0, "split_seed": None}) != ours:
            changed.append("data")
        if config.split_seed != self.config.split_seed:
            changed.append("data.split_seed (or train.seed without it)")
        if config.data.train_fraction != self.config.data.train_fraction and self.config.data.train_fraction < 1:
            changed.append("data.train_fraction (this run was prepared on a fraction)")
        if changed:
            raise ConfigError(f"{', '.join(changed)}: differ from the prepared run's; prepare again for another "
                              "data set, model or split")

    def build_model(self, config: RunConfig) -> TaskModel:
        """The task model before the strategy: built once per RNG state (a seed, once seeded) and copied after
        that, so the rows of a comparison load the backbone once and each gets the weights and the generator
        state a fresh build would have given it."""
        head = self.settled_head(config).head
        key = _rng_digest() + head.model_dump_json()
        if key in self.templates:
            template, after = self.templates[key]
            load_rng_state(*after)
            return load_backbone(copy.deepcopy(template), self.init_state, config.model.init_from)
        model = self.task.build_model(config.model.model_copy(update={"init_from": None}), head, self.label_names,
                                      self.model_dir)
        if len(self.templates) >= _MODEL_TEMPLATES:
            self.templates.pop(next(iter(self.templates)))
        self.templates[key] = (copy.deepcopy(model), rng_state())
        return load_backbone(model, self.init_state, config.model.init_from)


    def depth(self, config: RunConfig) -> int:
        """The backbone's number of blocks, from the model the runs will copy (built here once, for the
        config's seed, and kept as that seed's template)."""
        seed_everything(config.train.seed)
        return self.build_model(config).layer_stack.num_blocks


def _rng_digest() -> str:
    tensors, meta = rng_state()
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(tensors):
        digest.update(tensors[name].numpy().tobytes())
    return digest.hexdigest()


def prepare(config: RunConfig, *, trust_pickle: bool = False, console: Optional[Console] = None,
            checks: Sequence[Callable[[], object]] = ()) -> Prepared:
    """Read, split and hash the data, resolve and hash the model directory, load the task's preprocessor and
    encode the three splits: once per config, whatever is trained on them afterwards.

    `checks` (the caller's, e.g. the output folder's) run with the data and model checks, none stopping the
    others, so a user sees every problem of the output, data and model in one message (errors.check_all)."""
    console = console or Console(stderr=True)
    if config.tasks is not None:  # `tunelab train` prepares each task of it (orchestration/multitask.py)
        raise ConfigError("tasks: a multi-task config trains with `tunelab train` (and its run is read by `predict` "
                          "and `eval --head NAME`); compare, tune, recommend, continual and merge take single-task "
                          "configs and runs (task: and data:) for now")
    task = get_task(config.task)
    seed_everything(config.train.seed)
    device = select_device(config.train)
    check_quantize_device(config.strategy, device.type)  # before any data is read (run_one checks each row again)
    dist = from_environment(config.train.distributed, device, config.train.batch_size)
    config, note = resolve_run_precision(config, device)
    if note:
        console.print(note)
    *_, data, (model_dir, tokenizer), _ = check_all([*checks, lambda: load_data(config.data, task, config.split_seed),
                                                     lambda: _model_side(config, task, trust_pickle),
                                                     lambda: check_distillation(config)])
    check_distillation(config, data.label_names)
    encoded = {name: encode_split(getattr(data.splits, name), tokenizer, config.data.max_length, task,
                                  data.label_names, train=name == "train") for name in SPLITS}
    if config.data.sampler != "none":  # training batches drawn by class (data/encoding.py)
        encoded["train"].sampler = config.data.sampler
    if config.data.augment.text_enabled:  # training batches' tokens changed per (seed, epoch, batch)
        encoded["train"].augment = make_text_augment(config.data.augment, tokenizer)
    unknown = {name: unknown_token_rate(split, tokenizer) for name, split in encoded.items()}
    warn_unknown_tokens(unknown, tokenizer, config.model.name, console)
    declared_head, config = config.head, _settled(config, task, model_dir)
    init_state = backbone_state(Path(config.model.init_from), config) if config.model.init_from else None
    return Prepared(init_state=init_state, config=config, task=task, device=device, splits=data.splits, label_names=data.label_names,
                    data_hashes={name: hash_records(getattr(data.splits, name)) for name in SPLITS},
                    model_dir=model_dir, base_model_hash=hash_model_dir(model_dir), tokenizer=tokenizer,
                    encoded=encoded, declared_head=declared_head, unknown_token_rates=unknown, dist=dist)


def _settled(config: RunConfig, task: Task, model_dir: Path) -> RunConfig:
    head = task.settle_head(config.head, config.strategy.name, model_dir)
    return config if head == config.head else config.model_copy(update={"head": head})


def warn_unknown_tokens(rates: dict[str, Optional[float]], tokenizer: Any, model: str, console: Console) -> None:
    """One warning line naming every split whose [UNK] share passes UNKNOWN_WARN_RATE, with the share, the
    model and what to do: training goes on, but the model never sees what those tokens stood for."""
    high = {name: rate for name, rate in rates.items() if rate is not None and rate > UNKNOWN_WARN_RATE}
    if not high:
        return
    (first, rate), *rest = high.items()
    others = "".join(f"{name} {100 * other:.1f}%; " for name, other in rest)
    unk = getattr(tokenizer, "unk_token", None) or "the unknown token"
    message = (f"{100 * rate:.1f}% of the {first} split's sub-tokens are {unk} ({others}special tokens not counted) "
               f"with the tokenizer of model {model}: its vocabulary does not cover this text, and every word it misses "
               "reaches the model as that one token; pick a backbone for the text's language, e.g. a multilingual "
               "encoder (model: a local Hugging Face directory)")
    console.print(f"[yellow]warning:[/] {escape(message)}")


def _model_side(config: RunConfig, task: Task, trust_pickle: bool) -> tuple[Path, Any]:
    """The model directory and the task's preprocessor from it: everything prepare reads of the model,
    checked without the data."""
    model_dir = resolve_model_dir(config.model.name, trust_pickle)
    check_num_blocks(model_dir, config.model.num_blocks, config.model.trust_remote_code)
    return model_dir, task.load_preprocessor(model_dir, config)
