"""Configs shipped inside the package (the demo), so `tunelab train --demo` works from any install."""

from pathlib import Path

DEMO_CONFIG = Path(__file__).with_name("demo.yaml")
