"""`--resume`: find the unfinished run, pick its latest valid checkpoint, and check that it belongs to this run.

An unfinished run lives in the staging folder beside its output (named by
:func:`tunelab.artifacts.rundir.staging_path`), its checkpoints in `checkpoints/` there. A checkpoint records
the identity of the run that wrote it (the resolved config, the data hashes, the base model's hash): resuming
with anything else would not continue *that* run, so it is refused with the keys that differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from tunelab.artifacts.rundir import RunDirectory, target_of_staging
from tunelab.config.schema import RunConfig
from tunelab.errors import ConfigError
from tunelab.training.checkpoint import Checkpoint, CheckpointStore

__all__ = ["run_identity", "checkpoint_store", "check_resumable", "select_checkpoint", "resolve_resume_dir"]

# keys that may change between the killed run and its resume without changing the computation's result
_FREE_KEYS = {"output", "train.num_threads"}


def run_identity(config: RunConfig, data_sha256: dict[str, str], base_model_sha256: str) -> dict[str, Any]:
    return {"config": {k: v for k, v in _flatten(config.model_dump(mode="json")).items() if k not in _FREE_KEYS},
            "data_sha256": data_sha256, "base_model_sha256": base_model_sha256}


def checkpoint_store(run_dir: RunDirectory, config: RunConfig) -> CheckpointStore:
    return CheckpointStore(run_dir.staging / "checkpoints", config.train.keep_checkpoints,
                           sidecars=[run_dir.staging / "metrics.jsonl"])


def resolve_resume_dir(value: str) -> Path:
    """`--resume RUN_DIR` accepts the output folder, its staging folder or the checkpoints folder in that."""
    path = Path(value).expanduser()
    if path.name == "checkpoints":
        path = path.parent
    return target_of_staging(path) or path


def check_resumable(run_dir: RunDirectory) -> None:
    """Before any work: there is an unfinished run to resume."""
    if run_dir.staging.is_dir():
        return
    if (run_dir.target / "manifest.json").is_file():
        raise ConfigError(f"--resume: {run_dir.target} is a finished run (it has manifest.json), there is nothing to "
                          "resume; to train further, start a new run with another --out")
    raise ConfigError(f"--resume: no unfinished run for {run_dir.target} (no {run_dir.staging.name} folder beside it); "
                      "give the output folder of the killed run (--resume RUN_DIR), or start the run without --resume")


def select_checkpoint(store: CheckpointStore, identity: dict[str, Any], warn: Callable[[str], None]) -> Checkpoint:
    """The latest intact checkpoint of this run; corrupt ones are skipped with a warning."""
    checkpoint = store.latest_valid(warn)
    if checkpoint is None:
        raise ConfigError(f"--resume: no usable checkpoint in {store.root} (the run was stopped before its first "
                          "checkpoint, or all are damaged); start the run again without --resume, adding "
                          "--overwrite to discard the unfinished one")
    _check_identity(checkpoint, identity)
    store.clean_partial()  # only now: a refused resume leaves the unfinished run exactly as it was
    return checkpoint


def _check_identity(checkpoint: Checkpoint, identity: dict[str, Any]) -> None:
    saved = checkpoint.state.get("identity", {})
    if saved.get("base_model_sha256") != identity["base_model_sha256"]:
        raise ConfigError(f"--resume: checkpoint {checkpoint.path} was written from other base-model weights than "
                          "model.name has now; resume with the model the run started from, or start a new run")
    if saved.get("data_sha256") != identity["data_sha256"]:
        changed = [k for k in identity["data_sha256"] if saved.get("data_sha256", {}).get(k) != identity["data_sha256"][k]]
        raise ConfigError(f"--resume: the {'/'.join(changed) or 'data'} data differ from what checkpoint "
                          f"{checkpoint.path} was trained on; resume with the same data files, or start a new run")
    old, new = saved.get("config", {}), identity["config"]
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in differ[:5])
        raise ConfigError(f"--resume: the config differs from the one that wrote checkpoint {checkpoint.path} "
                          f"({shown}); resume with the same config (the run's own is in "
                          f"{checkpoint.path.parent.parent / 'config.yaml'}), or start a new run")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
