"""The repository stands alone: every citation points at a file in it, every reference anchor exists.

Citations of the method, the OVSS protocol and the published results point at ``docs/reference/``;
no doc, docstring or comment names a file outside the repository or a path on a build machine.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REF = ROOT / "docs" / "reference"
PAGES = ("method.md", "ovss-evaluation.md", "paper-results.md")
#: This test names the former files to forbid them.
EXEMPT = {"tests/core/test_self_contained.py"}
TEXT_SUFFIXES = {".py", ".md", ".json", ".cfg", ".toml", ".txt", ".sh", ".yaml", ".yml", ""}


def _tracked_text_files():
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.split()
    for rel in out:
        p = ROOT / rel
        if rel in EXEMPT or p.suffix not in TEXT_SUFFIXES or not p.is_file():
            continue
        try:
            yield rel, p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue


def _github_anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation other than - and _ dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set:
    return {_github_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", page.read_text(), re.M)}


FILES = list(_tracked_text_files())


def test_the_scan_sees_the_package():
    names = {rel for rel, _ in FILES}
    assert "farslip_ext/__init__.py" in names and "docs/architecture.md" in names


@pytest.mark.parametrize("pattern, what", [
    (r"farslip-method\.md|method spec|ovss-protocol\.md|published-results\.md", "a former background file"),
    (r"(?<![\w/.\[-])(ovss-evaluation\.md|paper-results\.md)", "a reference page without its docs/reference/ path"),
    (r"\.\./shared|/work/shared|/work/main|/tmp/official", "a path outside the repository"),
])
def test_no_citation_names_a_file_outside_the_repository(pattern, what):
    bad = []
    for rel, text in FILES:
        if rel.startswith("docs/reference/") and "ovss-evaluation" in pattern:
            continue  # pages of docs/reference/ link each other by relative name
        for n, line in enumerate(text.splitlines(), 1):
            if re.search(pattern, line):
                bad.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert not bad, f"{what}:\n" + "\n".join(bad[:20])


def test_every_section_citation_names_its_page():
    """A line citing a section (§N.M) names the page it belongs to (or links to it)."""
    bad = []
    for rel, text in FILES:
        if rel.startswith("docs/reference/"):
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if re.search(r"§\s?\d", line) and not re.search(r"(docs/)?reference/|(method|ovss-evaluation|paper-results)\.md", line):
                bad.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert not bad, "section citations without a page:\n" + "\n".join(bad[:20])


def test_every_link_into_docs_reference_resolves():
    anchors = {p: _anchors(REF / p) for p in PAGES}
    bad, seen = [], 0
    for rel, text in FILES:
        if not rel.endswith(".md"):
            continue
        for m in re.finditer(r"\]\(([^)#\s]*?(method|ovss-evaluation|paper-results|deviations)\.md)(#[^)\s]*)?\)", text):
            target = (ROOT / rel).parent / m.group(1)
            seen += 1
            if not target.is_file():
                bad.append(f"{rel}: {m.group(0)} (no such file)")
                continue
            if m.group(3) and target.name in anchors and m.group(3)[1:] not in anchors[target.name]:
                bad.append(f"{rel}: {m.group(0)} (no such heading)")
    assert seen > 50, f"only {seen} links into docs/reference/ were found: the scan is broken"
    assert not bad, "\n".join(bad[:20])


def test_code_citations_name_existing_sections():
    """``docs/reference/<page> §N.M`` in code and docs names a section that exists on that page."""
    sections = {p: set(re.findall(r"^#+\s+(\d+(?:\.\d+)?)\s", (REF / p).read_text(), re.M)) for p in PAGES}
    bad, seen = [], 0
    for rel, text in FILES:
        for m in re.finditer(r"docs/reference/(method|ovss-evaluation|paper-results)\.md §(\d+(?:\.\d+)?)", text):
            seen += 1
            if m.group(2) not in sections[m.group(1) + ".md"]:
                bad.append(f"{rel}: {m.group(0)}")
    assert seen > 50, f"only {seen} code citations were found: the scan is broken"
    assert not bad, "\n".join(bad[:20])
