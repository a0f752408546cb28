"""Several adapters on one base model, switched by name (`tunelab predict --adapter name=RUN_DIR`).

Each adapter run is loaded as usual, then every base-model parameter of the later runs is re-pointed at the
first run's tensor: the base weights are held once, and each name keeps only its own adapter and head
(label sets may differ between adapters). All runs must have been trained on the same base weights.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from tunelab.artifacts.adapter_io import is_adapter_dir, read_meta
from tunelab.artifacts.model_io import LoadedRun, load_run
from tunelab.errors import TunelabError
from tunelab.strategies.peft.base import adaptation_of, head_names

__all__ = ["parse_adapter_specs", "load_adapters", "shared_base_count"]


def parse_adapter_specs(specs: list[str]) -> dict[str, Path]:
    """`name=RUN_DIR` items (a bare RUN_DIR is named after its folder) -> ordered {name: run_dir}."""
    out: dict[str, Path] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).name, spec
        name = name.strip()
        if not name or not path.strip():
            raise TunelabError(f"--adapter {spec!r}: expected NAME=RUN_DIR, for example --adapter news=runs/news-lora")
        if name in out:
            raise TunelabError(f"--adapter: the name {name!r} is given twice; give each adapter its own name")
        out[name] = Path(path.strip())
    return out


def _base_parameters(run: LoadedRun) -> dict[str, nn.Parameter]:
    """Base-model parameters by their name in the unadapted model (wrappers keep the base as `base_layer`)."""
    adaptation = adaptation_of(run.model)
    own = set(adaptation.params if adaptation else ()) | set(head_names(run.model))
    return {name.replace(".base_layer.", "."): param for name, param in run.model.named_parameters() if name not in own}


def shared_base_count(runs: dict[str, LoadedRun]) -> int:
    """How many distinct base tensors the loaded adapters hold (tests assert it equals one base's)."""
    return len({id(p) for run in runs.values() for p in _base_parameters(run).values()})


def load_adapters(runs: dict[str, Path]) -> dict[str, LoadedRun]:
    loaded: dict[str, LoadedRun] = {}
    shared: dict[str, nn.Parameter] = {}
    base_hash = None
    for name, run_dir in runs.items():
        model_dir = Path(run_dir) / "model"
        if not is_adapter_dir(model_dir):
            raise TunelabError(f"--adapter {name}={run_dir}: not an adapter run (no {model_dir}/tunelab_adapter.json); "
                               "give runs trained with a PEFT strategy such as lora")
        meta_hash = read_meta(model_dir).get("base_model_hash")
        if base_hash is not None and meta_hash != base_hash:
            raise TunelabError(f"--adapter {name}={run_dir}: trained on other base weights than the first adapter; "
                               "adapters share one base only when they were trained on the same one")
        base_hash = meta_hash
        run = load_run(run_dir)
        if not shared:
            shared = _base_parameters(run)
        else:
            _share(run, shared)
        loaded[name] = run
    return loaded


def _share(run: LoadedRun, shared: dict[str, nn.Parameter]) -> None:
    adaptation = adaptation_of(run.model)
    own = set(adaptation.params if adaptation else ()) | set(head_names(run.model))
    modules = dict(run.model.named_modules())
    for actual, param in list(run.model.named_parameters()):
        source = shared.get(actual.replace(".base_layer.", "."))
        if actual in own or source is None or source.shape != param.shape:
            continue
        owner, _, leaf = actual.rpartition(".")
        setattr(modules[owner], leaf, source)
