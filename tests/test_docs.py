"""The documentation: README.md stays a front page, docs/ is the reference, and every link
leads to a file of the repository or to a public web page.

mkdocs build --strict (in .ci/run) checks the links between pages and their anchors; this
checks what MkDocs does not see: README.md and deploy/README.md, and links leaving docs/."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
AUTOLINK = re.compile(r"<((?:https?|ftp|file)://[^>\s]+)>")
HTML_LINK = re.compile(r"""(?:href|src)\s*=\s*["']([^"']+)["']""")
# GitHub makes a link of a bare URL in the text, too.
BARE_URL = re.compile(r"""(?<![(<"'=])\bhttps?://[^\s)>\]"'`]+""")


def pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted(DOCS.rglob("*.md"))]


def links(page: Path) -> list[str]:
    """Every link target of a Markdown page, outside code blocks and code spans."""
    text = CODE_SPAN.sub("", FENCE.sub("", page.read_text()))
    found: list[str] = []
    for pattern in (INLINE_LINK, REFERENCE_LINK, AUTOLINK, HTML_LINK, BARE_URL):
        found += pattern.findall(text)
    return list(dict.fromkeys(target.rstrip(".,;:") for target in found))


def is_public_web_page(target: str) -> bool:
    parts = urlsplit(target)
    if parts.scheme != "https" and parts.scheme != "http":
        return False
    host = parts.hostname or ""
    if not host or host == "localhost" or host.endswith((".local", ".internal", ".localhost")) or "." not in host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return address.is_global


def relative(target: str) -> bool:
    return not urlsplit(target).scheme and not target.startswith(("//", "#"))


def test_the_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines: the reference belongs in docs/"
    assert lines[0] == "# fleetgate"


def test_the_link_finder_sees_every_kind_of_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "[a](one.md) ![b](two.png \"title\") [c](<three.md>)\n"
        "[ref]: four.md\n"
        "<https://example.org/five>\n"
        '<a href="six.md">six</a>\n'
        "browse http://127.0.0.1:8000.\n"
        "`[not](a-link.md)` `http://127.0.0.1:1`\n"
        "```\n[nor](this.md)\n```\n"
    )
    assert sorted(links(page)) == sorted(
        ["one.md", "two.png", "three.md", "four.md", "https://example.org/five", "six.md", "http://127.0.0.1:8000"]
    )


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_is_a_file_of_the_repository(page: Path) -> None:
    for target in filter(relative, links(page)):
        path = (page.parent / urlsplit(target).path).resolve()
        assert path.is_relative_to(ROOT), f"{target} leaves the repository"
        assert path.exists(), f"{target} does not exist"


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_other_link_is_a_public_web_page(page: Path) -> None:
    assert "../shared" not in page.read_text(), "the shared notes are not part of the repository"
    for target in links(page):
        if relative(target) or target.startswith("#"):
            continue
        assert is_public_web_page(target), f"{target} is not a public web page"


def test_links_inside_docs_stay_inside_docs() -> None:
    # MkDocs publishes docs/ alone: a page linking out of it builds a broken link.
    for page in sorted(DOCS.rglob("*.md")):
        for target in filter(relative, links(page)):
            path = (page.parent / urlsplit(target).path).resolve()
            assert path.is_relative_to(DOCS), f"{page.name}: {target} is outside docs/"


def nav_pages(entries: list) -> list[str]:
    found: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        found += nav_pages(value) if isinstance(value, list) else [value]
    return found


def test_the_navigation_names_every_page_once() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    named = nav_pages(config["nav"])
    assert len(named) == len(set(named)), "a page is in the navigation twice"
    on_disk = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert set(named) == on_disk

