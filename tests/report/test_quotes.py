"""Figures quoted in prose follow the results files: a page and its file cannot disagree on main."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.results import quotes
from benchmarks.results.quotes import Results

EVICTED = "eviction.volatile_lru.evicted"


def test_every_quoted_figure_agrees_with_the_committed_reference():
    wrong = quotes.check()
    assert not wrong, "pages quote figures their results files do not give " \
        "(brokerbench quotes --update rewrites them):\n" + "\n".join(map(str, wrong))


def test_the_teaching_pages_quote_their_figures_through_marks():
    pages = {m.page for m in quotes.marks()}
    assert {"docs/teaching/answers.md", "docs/teaching/which_to_choose.md", "docs/teaching/run_sheet.md",
            "README.md"} <= pages


def test_every_quote_reads_the_committed_reference():
    given = quotes.figures(Results(quotes.REFERENCE), quotes.registry())
    failing = {name: text for name, text in given.items() if text.startswith("!")}
    assert not failing, failing


def _reference_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "results"
    shutil.copytree(quotes.REFERENCE, copy)
    shutil.copy(quotes.REFERENCE.parent / "reference.json", tmp_path)  # the reference's own quotes read it
    return copy


def _change_evicted(results: Path, by: int) -> int:
    [path] = sorted(results.glob("scenarios/backpressure-maxmemory-volatile-lru-*.json"))
    d = json.loads(path.read_text())
    d["fault"]["evicted_keys"] += by
    path.write_text(json.dumps(d))
    return d["fault"]["evicted_keys"]


def test_a_changed_results_file_fails_the_check_naming_page_line_and_both_figures(tmp_path):
    results = _reference_copy(tmp_path)
    now = _change_evicted(results, 7)
    wrong = quotes.check(results)
    assert wrong and all(w.mark.name == EVICTED for w in wrong)
    quoted_at = {(m.page, m.line) for m in quotes.marks() if m.name == EVICTED}
    assert {(w.mark.page, w.mark.line) for w in wrong} == quoted_at
    assert all(w.expected == f"{now:,}" for w in wrong)
    assert f"results give '{now:,}'" in str(wrong[0])


def test_the_command_exits_1_on_a_difference_and_0_when_all_agree(tmp_path, capsys):
    assert quotes.main([]) == 0
    results = _reference_copy(tmp_path)
    _change_evicted(results, 3)
    assert quotes.main(["--results", str(results)]) == 1
    assert EVICTED in capsys.readouterr().out


def _project(tmp_path: Path, page: str) -> Path:
    root = tmp_path / "project"
    (root / "docs" / "teaching").mkdir(parents=True)
    (root / "docs" / "teaching" / "page.md").write_text(page)
    return root


def test_update_rewrites_only_the_figures_between_the_marks(tmp_path):
    results = _reference_copy(tmp_path)
    now = _change_evicted(results, 11)
    page = (f"Evicted <!--q:{EVICTED}-->1<!--/q--> keys; 1 stays.\n"
            "Headline <!--q:headline.repetitions-->99<!--/q--> times, and 99 stays.\n")
    root = _project(tmp_path, page)
    changed = quotes.update(results, root)
    assert {c.mark.name for c in changed} == {EVICTED, "headline.repetitions"}
    reps = quotes.figures(Results(results), ["headline.repetitions"])["headline.repetitions"]
    assert (root / "docs/teaching/page.md").read_text() == (
        f"Evicted <!--q:{EVICTED}-->{now:,}<!--/q--> keys; 1 stays.\n"
        f"Headline <!--q:headline.repetitions-->{reps}<!--/q--> times, and 99 stays.\n")
    assert quotes.check(results, root) == []


def test_an_unknown_name_or_a_missing_file_is_a_difference_that_update_leaves_alone(tmp_path):
    results = tmp_path / "empty"
    results.mkdir()
    page = f"<!--q:no.such.quote-->5<!--/q--> and <!--q:{EVICTED}-->1,540<!--/q-->\n"
    root = _project(tmp_path, page)
    wrong = {w.mark.name: w.expected for w in quotes.check(results, root)}
    assert wrong["no.such.quote"].startswith("! no such quote")
    assert wrong[EVICTED].startswith("! no results file")
    quotes.update(results, root)
    assert (root / "docs/teaching/page.md").read_text() == page


def test_a_quote_that_matches_several_files_must_say_which(tmp_path):
    for n in (1, 2):
        (tmp_path / f"setup-{n}.json").write_text(json.dumps({"start_s": {"redis": n}}))
    with pytest.raises(quotes.QuoteError, match="2 results files match"):
        Results(tmp_path).value("setup-*.json", "start_s.redis")
    assert Results(tmp_path).values("setup-*.json", "start_s.redis") == [1, 2]


def test_figures_print_as_the_pages_print_them():
    assert quotes.count(1540.4) == "1,540"
    assert quotes.span([1904, 1934]) == "1,904-1,934"
    assert quotes.span([0, 0, 0]) == "0"
    assert quotes.span([18.0, 30.8], quotes.fixed) == "18.0-30.8"
