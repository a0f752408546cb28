"""The `tunelab` command line."""

from tunelab.cli.main import app, main

__all__ = ["app", "main"]
