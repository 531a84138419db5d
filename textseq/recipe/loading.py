"""Loading recipes: YAML files and `--set a.b=c` overrides into the typed sections of
`textseq.recipe.sections`.

Validation names the key path, the file and line, what was received and what is allowed, and
suggests the nearest key for a typo.

>>> recipe = load_recipe("recipes/dates.yaml", overrides=["model.cell=gru"])
>>> recipe.model.cell
'gru'
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from pathlib import Path
from typing import Any

import yaml

from textseq.errors import UserError
from textseq.recipe.sections import Recipe, hints_of
from textseq.recipe.values import Broken, Where, check_value, recipe_key

log = logging.getLogger(__name__)

MAX_RECIPE_BYTES = 1_000_000  # a recipe is a short YAML file

# The section `decode:` was called `export:` in runs made before it drove translate and evaluate too.
RENAMED_SECTIONS = {"export": ("decode", {"max_output_length": "max_length"})}


def load_recipe(path: str | Path, overrides: list[str] = ()) -> Recipe:
    """Reads a YAML recipe, applies `key.path=value` overrides, and validates the result."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such recipe file; recipes/ has ready ones, e.g. recipes/dates.yaml")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give the path of a recipe .yaml file")
    text = read_recipe_text(path)
    try:
        reject_aliases(text, str(path))
        raw = yaml.safe_load(text)
        lines = _key_lines(yaml.compose(text), source=str(path))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise UserError(f"{where}: YAML syntax error: {problem}; fix the line or quote the value") from None
    if raw is None or raw == {}:
        raise UserError(f"{path}: the recipe is empty; a recipe says at least what data to train on (data:) and "
                        "usually the model and training sizes; recipes/dates.yaml is a small one to start from")
    if not isinstance(raw, dict):
        raise UserError(f"{path}:1: a recipe is a mapping of sections (data, vocab, model, train, decode); got {type(raw).__name__}")
    return recipe_from_dict(raw, overrides, source=str(path), lines=lines)


def read_recipe_text(path: Path) -> str:
    """The recipe file's text, or a UserError that names the file, line and byte that are not UTF-8."""
    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        raise UserError(f"{path}: {size:,} bytes; a recipe is a short YAML file (at most "
                        f"{MAX_RECIPE_BYTES:,} bytes): is this the right file?")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: byte {data[error.start]:#04x} (offset {error.start}) is not UTF-8; save the "
                        "recipe as UTF-8 text") from None


def reject_aliases(text: str, source: str) -> None:
    """Refuses YAML aliases (`*name`): expanded, a few hundred bytes of them can ask for gigabytes."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise UserError(f"{source}:{event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not accepted "
                            "in recipes; write the value out")


def recipe_from_dict(raw: dict, overrides: list[str] = (), source: str = "recipe", lines: dict | None = None) -> Recipe:
    """Builds a validated Recipe from plain data (what `yaml.safe_load` gives) and overrides."""
    raw = _rename_old_sections(_deep_copy(raw), source)
    for item in overrides:
        _apply_override(raw, _renamed_override(item))
    recipe = _build(Recipe, raw, (), Where(source, lines or {}, overrides))
    if recipe.data.dir and not Path(recipe.data.dir).expanduser().is_absolute():
        # Relative to where the command runs; kept absolute so the run can be used from anywhere.
        recipe = dataclasses.replace(recipe, data=dataclasses.replace(
            recipe.data, dir=str(Path(recipe.data.dir).expanduser().resolve())))
    return recipe


def recipe_differences(old: Recipe, new: Recipe) -> list[str]:
    """The dotted keys whose values differ between two recipes."""
    before = _flatten(old.to_dict())
    return sorted(k for k, v in _flatten(new.to_dict()).items() if before.get(k) != v)


# --- loading and validation --------------------------------------------------------------------


def _key_lines(node: yaml.Node | None, prefix: tuple = (), source: str = "recipe") -> dict:
    """Maps each key path to the 1-based line where it is written; a key written twice is refused
    (YAML keeps the last one silently)."""
    lines = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = prefix + (str(key.value),)
            if path in lines:
                raise UserError(f"{source}:{key.start_mark.line + 1}: {'.'.join(path)} is written twice (also on "
                                f"line {lines[path]}); keep one")
            lines[path] = key.start_mark.line + 1
            lines.update(_key_lines(value, path, source))
    return lines


def _rename_old_sections(raw: dict, source: str) -> dict:
    """A recipe written before a section was renamed, read with today's names (and a note saying so)."""
    for old, (new, keys) in RENAMED_SECTIONS.items():
        if old in raw:
            if new in raw:
                raise UserError(f"{source}: has both {old}: and {new}:; {old}: is the old name of {new}:, keep one")
            section = raw.pop(old)
            raw[new] = {keys.get(key, key): value for key, value in section.items()} if isinstance(section, dict) \
                else section
            log.info("note: %s: the %s: section is now called %s:%s; read as such", source, old, new,
                     "".join(f" ({old}.{a} is {new}.{b})" for a, b in keys.items()))
    return raw


def _renamed_override(item: str) -> str:
    key, sep, value = item.partition("=")
    section, dot, name = key.strip().partition(".")
    if section in RENAMED_SECTIONS and dot:
        new, keys = RENAMED_SECTIONS[section]
        return f"{new}.{keys.get(name, name)}{sep}{value}"
    return item


def _apply_override(raw: dict, item: str) -> None:
    if "=" not in item:
        raise UserError(f"--set {item}: expected KEY=VALUE, e.g. --set model.units=128")
    key, value = (part.strip() for part in item.split("=", 1))
    parts = key.split(".")
    target = raw
    for part in parts[:-1]:
        if not isinstance(target.get(part, {}), dict):
            raise UserError(f"--set {item}: {part} is not a section")
        target = target.setdefault(part, {})
    try:
        reject_aliases(value, f"--set {item}")
        target[parts[-1]] = yaml.safe_load(value) if value else None
    except yaml.YAMLError:
        target[parts[-1]] = value


def _build(cls: type, raw: Any, path: tuple, where: Where) -> Any:
    dotted = ".".join(path) or "the recipe"
    if not isinstance(raw, dict):
        raise UserError(f"{where(path)}{dotted} must be a mapping of keys; got {raw!r}")
    fields = {recipe_key(f): f for f in dataclasses.fields(cls)}
    hints = hints_of(cls)
    for key in raw:
        if key not in fields:
            name = ".".join(path + (str(key),))
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {'.'.join(path + (near[0],))}?" if near else f"; known keys: {', '.join(fields)}"
            raise UserError(f"{where(path + (str(key),))}unknown key {name}{hint}")
    values = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            values[f.name] = _build(hint, raw[name] if raw[name] is not None else {}, path + (name,), where)
        else:
            values[f.name] = check_value(raw[name], hint, f.metadata, path + (name,), where)
    try:
        recipe = cls(**values)
    except UserError as error:  # rules of a section's own (DecodingOptions)
        raise UserError(f"{where(path)}{error}") from None
    try:
        getattr(recipe, "check", lambda: None)()
    except Broken as broken:
        raise UserError(f"{where(path + broken.key)}{broken.message}") from None
    return recipe


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def describe_defaults() -> str:
    """Every recipe key with its default and help line, for `--help` and the README."""
    rows = []
    for section in dataclasses.fields(Recipe):
        hint = hints_of(Recipe)[section.name]
        if not dataclasses.is_dataclass(hint):
            rows.append(f"{section.name}: {section.default!r}  # {section.metadata['help']}")
            continue
        rows.append(f"{section.name}:")
        for f in dataclasses.fields(hint):
            default = "null" if f.default is None else yaml.safe_dump(f.default).strip().removesuffix("...").strip()
            rows.append(f"  {recipe_key(f)}: {default}  # {f.metadata['help']}")
    return "\n".join(rows)
