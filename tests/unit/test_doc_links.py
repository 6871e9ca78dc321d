"""Every relative link in the README and docs/ leads somewhere: the file exists and, for a link to
`page.md#anchor`, the page has a heading with that anchor (as GitHub makes them), so a renamed
heading or a moved page fails here instead of in a reader's browser."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "examples").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def prose(text: str) -> list[str]:
    """The page's lines outside fenced code blocks (a link in code is an example, not a link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of `page`'s headings; a repeated heading's later ones get -1, -2, ... as on GitHub."""
    seen: Counter[str] = Counter()
    found = set()
    for line in prose(page.read_text(encoding="utf-8")):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        base = anchor(m.group(1))
        found.add(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return found


def broken_links(pages: list[Path], root: Path = ROOT) -> list[str]:
    cache: dict[Path, set[str]] = {}
    broken = []
    for page in pages:
        for n, line in enumerate(prose(page.read_text(encoding="utf-8")), 1):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                    continue
                path, _, frag = target.partition("#")
                dest = (page.parent / path).resolve() if path else page
                where = f"{page.relative_to(root)} (prose line {n}): {target}"
                if not dest.exists():
                    broken.append(f"{where}: no such file")
                elif frag and dest.suffix == ".md":
                    if dest not in cache:
                        cache[dest] = anchors(dest)
                    if frag not in cache[dest]:
                        broken.append(f"{where}: no heading with that anchor")
    return broken


def test_anchor_follows_githubs_rules() -> None:
    assert anchor("The CLI's start: a command's help (2026-12-07, after midnight)") == \
        "the-clis-start-a-commands-help-2026-12-07-after-midnight"
    assert anchor("`serve --workers 2` on a quiet machine") == "serve---workers-2-on-a-quiet-machine"
    assert anchor("Remote mode: through a [node](x.md)'s admin API") == "remote-mode-through-a-nodes-admin-api"


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Title\n## Same\n## Same\n", encoding="utf-8")
    page.write_text("[a](other.md#title) [b](other.md#same-1) [c](other.md#nope) [d](gone.md)\n"
                    "```\n[e](gone-too.md)\n```\n[f](https://example.com/x.md#y) [g](#here)\n## Here\n",
                    encoding="utf-8")
    assert broken_links([page], tmp_path) == ["page.md (prose line 1): other.md#nope: no heading with that anchor",
                     "page.md (prose line 1): gone.md: no such file"]


def test_every_relative_link_in_the_docs_resolves() -> None:
    broken = broken_links(PAGES)
    assert not broken, "fix these links (or the headings they name):\n" + "\n".join(broken)
