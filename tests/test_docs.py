"""The README and the docs hold: the Python example runs, the Quickstart's test command is CI's,
and every link (to a file, or to a section of BENCHMARKS.md or another page) lands somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, ROOT / "BENCHMARKS.md", ROOT / "CHANGELOG.md", ROOT / "SECURITY.md",
         *sorted((ROOT / "docs").rglob("*.md"))]


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a markdown file (headings inside code blocks are not headings)."""
    out, fenced, seen = set(), False, {}
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            base = github_anchor(line.lstrip("#"))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_the_quickstart_is_two_commands_and_its_test_command_is_the_one_ci_runs():
    quickstart = _code_blocks(_section(README.read_text(), "Quickstart"), "bash")
    assert len(quickstart) == 1
    commands = [line for line in quickstart[0].splitlines() if line.strip()]
    assert len(commands) == 2
    install, tests = commands
    assert install.startswith("pip install -e ") and install.endswith("&& rlfm-edge demo")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert tests in ci, f"{tests!r} is not a line of .ci/run"
    extras = re.search(r'"\.\[([a-z,]+)\]"', install).group(1)
    assert any(f'".[{extras}]"' in line for line in ci)  # CI installs what the README does


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_link_of_a_page_lands_on_a_file_and_section_that_exist(page):
    for link in links(page):
        if re.match(r"[a-z]+:", link):
            continue  # http(s) and mailto links are not checked offline
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name}: link {link!r}: no {path}"
        if anchor:
            assert path.is_file() and anchor in anchors(path), \
                f"{page.name}: link {link!r}: no section #{anchor} in {path.name}"


def test_every_result_in_the_readme_links_to_its_benchmarks_section():
    results = _section(README.read_text(), "Results")
    rows = [line for line in results.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert 1 <= len(rows) <= 10
    for row in rows:
        figures = re.findall(r"\d+(?:\.\d+)?", row.split("|")[2])
        if figures:
            assert "BENCHMARKS.md#" in row, f"a README result without its BENCHMARKS section: {row}"


@pytest.mark.slow
def test_the_readme_python_example_runs(capsys):
    (example,) = _code_blocks(_section(README.read_text(), "In Python"), "python")
    exec(compile(example, "README.md (In Python)", "exec"), {"__name__": "readme_example"})
    assert "return: first 5 episodes" in capsys.readouterr().out
