"""Every kind of report opened in a real browser: headless Chromium from the Debian package (/usr/bin/chromium),
driven by playwright (whose own browser download is never used). A page fails on any console error, page error,
failed request or request to anything but a file: URL; its screenshot must not be blank, and its plots must be
there as `svg` elements in their sections. Without chromium the test is skipped, except under CI (CI=...), where
.ci/run installs it and a missing browser is a failure.

Set TUNELAB_REPORT_SHOTS=/some/folder to keep a copy of each screenshot there."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# report kind -> (fixture giving its folder, sections that must hold a plot, sections that must hold a table)
KINDS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "classification": ("classification_run", ("loss", "validation", "confusion", "per-class", "data", "parameters"),
                       ("test", "validation", "per-class", "data", "parameters")),
    "regression": ("regression_run", ("loss", "validation", "scatter", "data", "parameters"), ("test", "data")),
    "token": ("token_run", ("loss", "validation", "entities", "data", "parameters"), ("entities",)),
    "image": ("image_run", ("loss", "validation", "confusion", "per-class", "misclassified", "data", "parameters"),
              ("per-class",)),
    "instruction": ("instruction_run", ("loss", "validation", "data", "parameters"), ("generations", "test")),
    "compare": ("compare_dir", ("params", "time", "curves", "fractions"), ("runs", "summary", "skipped")),
    "tune": ("tune_dir", ("history", "slice"), ("trials",)),
}


def _browser_or_skip() -> None:
    missing = None
    if not CHROMIUM.is_file():
        missing = f"{CHROMIUM} not found (Debian: apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed (pip install -e '.[test]')"
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test: {missing}; .ci/run installs chromium")
    if missing:
        pytest.skip(missing)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield launched
        launched.close()


def _open(browser: Any, report: Path) -> tuple[Any, list[str]]:
    """The report in a fresh page, and every problem the page met while loading."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("request", lambda r: None if r.url.startswith("file://") else problems.append(f"request to {r.url[:80]}"))
    page.goto(report.resolve().as_uri(), wait_until="load")
    return page, problems


def _distinct_colours(png: Path) -> int:
    from PIL import Image

    with Image.open(png) as image:
        return len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])


@pytest.mark.parametrize("kind", list(KINDS))
def test_report_opens_clean_in_chromium(kind: str, browser: Any, request: pytest.FixtureRequest,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    fixture, plotted, tabled = KINDS[kind]
    folder: Path = request.getfixturevalue(fixture)
    if kind == "compare":
        from tunelab.report import write_compare_report

        write_compare_report(folder)
    page, problems = _open(browser, folder / "report.html")
    try:
        shot = tmp_path_factory.mktemp("shots") / f"{kind}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert not problems, "\n".join(problems)
        missing = [s for s in plotted if page.locator(f"section#{s} svg").count() == 0]
        assert not missing, f"{kind}: no plot in sections {missing}"
        assert all(page.locator(f"section#{s} table").count() for s in tabled), tabled
        assert page.locator("header h1").inner_text().startswith("tunelab")
        assert _distinct_colours(shot) > 50, f"{shot} looks blank"
    finally:
        page.close()
    keep = os.environ.get("TUNELAB_REPORT_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)


def test_missing_browser_skips_here_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(_browser_or_skip.__globals__, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not found"):
        _browser_or_skip()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run the browser test"):
        _browser_or_skip()
