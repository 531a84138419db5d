"""mkdocs hook: the recipe key reference, generated from `textseq/recipe/sections.py` so it cannot drift."""

from __future__ import annotations

import dataclasses
import html
import typing

import yaml

MARKER = "<!-- recipe-keys -->"


def recipe_keys_table() -> str:
    from textseq.recipe import Recipe

    rows = ["| key | default | what it does |", "|---|---|---|"]
    hints = typing.get_type_hints(Recipe)
    for section in dataclasses.fields(Recipe):
        config = hints[section.name]
        if not dataclasses.is_dataclass(config):
            rows.append(f"| `{section.name}` | `{section.default}` | {section.metadata['help']} |")
            continue
        for field in dataclasses.fields(config):
            default = "null" if field.default is None else yaml.safe_dump(field.default).strip().removesuffix("...").strip()
            text = html.escape(field.metadata["help"], quote=False).replace("|", "\\|")
            key = field.metadata.get("key", field.name)
            rows.append(f"| `{section.name}.{key}` | `{default}` | {text} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return markdown.replace(MARKER, recipe_keys_table()) if MARKER in markdown else markdown
