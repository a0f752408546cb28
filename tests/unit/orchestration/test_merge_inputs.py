"""Which runs a compare or tune folder stands for: its finished rows in its file's order; failed rows and
pruned trials are skipped with the reason. (Files only: what the rows hold is tested in test_merge.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.orchestration.merge_inputs import expand_sources


def _run(path: Path) -> Path:
    (path / "model").mkdir(parents=True)
    return path


def test_a_compare_folder_stands_for_its_finished_rows(tmp_path: Path) -> None:
    cmp = tmp_path / "cmp"
    _run(cmp / "runs" / "full-s0"), _run(cmp / "runs" / "lora-s0")
    rows = [{"name": "full-s0", "run_dir": "runs/full-s0", "status": "done"},
            {"name": "houlsby-s0", "run_dir": "runs/houlsby-s0", "status": "failed", "error": "RuntimeError: boom"},
            {"name": "lora-s0", "run_dir": "runs/lora-s0", "status": "done"}]
    (cmp / "compare.json").write_text(json.dumps({"rows": rows}))
    lone = _run(tmp_path / "lone")
    runs, skipped = expand_sources([cmp, lone])
    assert runs == [cmp / "runs" / "full-s0", cmp / "runs" / "lora-s0", lone]
    assert skipped == [{"run": str(cmp / "runs" / "houlsby-s0"), "reason": "no finished model (RuntimeError: boom)"}]


def test_a_tune_folder_stands_for_its_complete_trials(tmp_path: Path) -> None:
    tune = tmp_path / "tune"
    _run(tune / "trials" / "0"), _run(tune / "trials" / "2")
    (tune / "trials" / "1").mkdir(parents=True)   # a pruned trial keeps no model
    trials = [{"number": 0, "state": "COMPLETE"}, {"number": 1, "state": "PRUNED"}, {"number": 2, "state": "COMPLETE"}]
    (tune / "tune.json").write_text(json.dumps({"trials": trials}))
    runs, skipped = expand_sources([tune])
    assert runs == [tune / "trials" / "0", tune / "trials" / "2"]
    assert skipped == [{"run": str(tune / "trials" / "1"), "reason": "no finished model (PRUNED)"}]
