"""mkdocs hook: the recipe key reference, generated from `textseq/recipe/sections.py` so it cannot drift."""

from __future__ import annotations

import dataclasses
import html
import typing

import yaml
from markdown import Extension
from markdown.preprocessors import Preprocessor

MARKER = "<!-- recipe-keys -->"


class DoctestBlocks(Preprocessor):
    """Docstring examples (`>>>` lines and the output after them, up to a blank line) as code blocks;
    Markdown would read their `>>>` as three nested quotes."""

    def run(self, lines: list[str]) -> list[str]:
        out, inside = [], False
        for line in lines:
            starts = line.lstrip().startswith(">>>")
            if starts and not inside:
                out += ["", "```pycon"]
                inside = True
            elif inside and not line.strip():
                out += ["```", ""]
                inside = False
            out.append(line)
        return out + (["```"] if inside else [])


class DoctestExtension(Extension):
    def extendMarkdown(self, md):
        md.preprocessors.register(DoctestBlocks(md), "textseq_doctest", 28)  # before fenced code (25)


def on_config(config, **kwargs):
    config.markdown_extensions.append(DoctestExtension())
    return config


def recipe_keys_table() -> str:
    from textseq.recipe import Recipe
    from textseq.recipe.values import allowed_values

    def cell(text: str) -> str:
        return html.escape(text, quote=False).replace("|", "\\|")

    rows = ["| key | default | takes | what it does |", "|---|---|---|---|"]
    hints = typing.get_type_hints(Recipe)
    for section in dataclasses.fields(Recipe):
        config = hints[section.name]
        if not dataclasses.is_dataclass(config):
            takes = allowed_values(config, section.metadata)
            rows.append(f"| `{section.name}` | `{section.default}` | {cell(takes)} | {cell(section.metadata['help'])} |")
            continue
        field_hints = typing.get_type_hints(config)
        for field in dataclasses.fields(config):
            default = "null" if field.default is None else yaml.safe_dump(field.default).strip().removesuffix("...").strip()
            takes = allowed_values(field_hints[field.name], field.metadata)
            key = field.metadata.get("key", field.name)
            rows.append(f"| `{section.name}.{key}` | `{default}` | {cell(takes)} | {cell(field.metadata['help'])} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **kwargs) -> str:
    return markdown.replace(MARKER, recipe_keys_table()) if MARKER in markdown else markdown


def on_page_content(html: str, page, **kwargs) -> str:
    """The command-line page: an option without a default shows none, not Click's internal sentinel
    (mkdocs-click prints `option.default`, which Click 8.2+ leaves as `Sentinel.UNSET`)."""
    if page.file.src_uri == "cli.md":
        html = html.replace("<code>Sentinel.UNSET</code>", "<em>none</em>")
    return html
