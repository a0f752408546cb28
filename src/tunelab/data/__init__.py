"""Data: reading labelled examples, splitting them, and the label map tasks encode against."""

from tunelab.data.builtin import BUILTIN_DATASETS, load_bbc_news
from tunelab.data.labels import build_label_map, check_known_labels
from tunelab.data.readers import read_records
from tunelab.data.records import LabelKind, Record, Splits
from tunelab.data.splits import stratified_split

__all__ = [
    "Record", "Splits", "LabelKind", "read_records", "stratified_split", "build_label_map",
    "check_known_labels", "load_bbc_news", "BUILTIN_DATASETS",
]
