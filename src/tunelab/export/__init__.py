"""Exports of a finished run to formats other tools load, each checked against the run's own outputs."""

from tunelab.export.formats import EXPORT_FORMATS, export_run
from tunelab.export.merge import export_merged

__all__ = ["export_run", "export_merged", "EXPORT_FORMATS"]
