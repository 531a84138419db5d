"""The measured figures that the README and the guide state, kept in one file (`docs/figures.yaml`).

A page marks a figure where it states it: `<!-- figure:NAME -->VALUE<!-- /figure -->` (the comment
does not show on GitHub or in the site). `python docs/figures.py` writes every marked value from
`figures.yaml`, after a benchmark changed one there; `--check` lists the pages that disagree with
it, as `tests/test_docs.py` does.

>>> marked("a <!-- figure:dates_time -->56 s<!-- /figure --> run")  # doctest: +SKIP
[('dates_time', '56 s')]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"<!-- figure:(\w+) -->(.*?)<!-- /figure -->", re.S)


def figures() -> dict[str, dict]:
    """Every figure: its `value` as the pages show it, and the `cpu`, `date` and `command` that measured it."""
    return yaml.safe_load((ROOT / "docs" / "figures.yaml").read_text(encoding="utf-8"))


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def marked(text: str) -> list[tuple[str, str]]:
    """The (name, value) of each figure marked in `text`."""
    return MARK.findall(text)


def disagreements() -> list[str]:
    """`page: name shows X, figures.yaml has Y` for every marked figure that differs, or is unknown."""
    known, found = figures(), []
    for page in pages():
        for name, value in marked(page.read_text(encoding="utf-8")):
            if name not in known:
                found.append(f"{page.relative_to(ROOT)}: {name} is not in docs/figures.yaml")
            elif value != str(known[name]["value"]):
                found.append(f"{page.relative_to(ROOT)}: {name} shows {value!r}, docs/figures.yaml has "
                             f"{known[name]['value']!r}")
    return found


def write() -> None:
    known = figures()
    for page in pages():
        text = page.read_text(encoding="utf-8")
        new = MARK.sub(lambda m: f"<!-- figure:{m[1]} -->{known[m[1]]['value']}<!-- /figure -->", text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            print(f"updated {page.relative_to(ROOT)}")


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        problems = disagreements()
        print("\n".join(problems) or "every marked figure agrees with docs/figures.yaml")
        sys.exit(1 if problems else 0)
    write()
