"""The run directory: atomic files, manifest, model save/load."""

from tunelab.atomic import atomic_write_json, atomic_write_text
from tunelab.artifacts.model_io import LoadedRun, load_run, save_task_model
from tunelab.artifacts.rundir import RunDirectory

__all__ = ["atomic_write_json", "atomic_write_text", "RunDirectory", "save_task_model", "load_run", "LoadedRun"]
