"""The JSON bodies the API accepts: fields, types, defaults and limits, checked before any model work.

Every problem is an `ApiError` with the HTTP status and a message that names the field, what was
expected and what came; nothing reaches the model unchecked.

>>> parse_body(b'{"text": "a man", "suggestions": 3}', PREDICT)
{'text': 'a man', 'suggestions': 3}
>>> try:
...     parse_body(b'{"txt": "a"}', PREDICT)
... except ApiError as error:
...     print(error.status, error.message)
400 unknown field "txt"; this endpoint takes: text, suggestions
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from textseq.recipe import MAX_ALPHA, MAX_SEED, MAX_TEMPERATURE, MIN_TEMPERATURE

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_TEXT_CHARACTERS = 2000
MAX_TEXT_TOKENS = 512


class ApiError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


@dataclass(frozen=True)
class Field:
    kind: str  # "text", "int", "number" or "seed"
    default: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # the low bound itself is not allowed

    def check(self, name: str, value: Any) -> Any:
        if value is None:
            return self.default
        if self.kind == "text":
            if not isinstance(value, str):
                raise ApiError(f'field "{name}": expected a string, got {shown(value)}')
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as error:
                raise ApiError(f'field "{name}": character {error.start + 1} is an unpaired surrogate '
                               f'({json.dumps(value[error.start])}); send text as UTF-8, or with \\u escapes '
                               'in pairs') from None
            if len(value) > MAX_TEXT_CHARACTERS:
                raise ApiError(f'field "{name}": {len(value)} characters; at most {MAX_TEXT_CHARACTERS} are accepted',
                               413)
            return value
        expected = "a number" if self.kind == "number" else "an integer"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                self.kind in ("int", "seed") and isinstance(value, float) and not value.is_integer()):
            raise ApiError(f'field "{name}": expected {expected}, got {shown(value)}')
        if isinstance(value, float) and not math.isfinite(value):
            raise ApiError(f'field "{name}": expected a finite number, got {value}')
        value = int(value) if self.kind in ("int", "seed") else value
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        if too_low or (self.high is not None and value > self.high):
            low = "" if self.low is None else f"{'above' if self.low_open else 'at least'} {plain(self.low)}"
            high = "" if self.high is None else f"at most {plain(self.high)}"
            received = f"{value:g}" if isinstance(value, float) or abs(value) < 10**15 else f"{str(value)[:12]}..."
            raise ApiError(f'field "{name}": {received} is out of range; expected {" and ".join(filter(None, [low, high]))}')
        return float(value) if self.kind == "number" else value


def plain(bound: float) -> str:
    """A bound as people write it: 4294967295, not 4.29497e+09."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def shown(value: Any) -> str:
    """A received value for a message: short, and never walked when it is a container (it may nest
    a thousand levels deep)."""
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "an object"
    return json.dumps(value)[:40]


SAMPLING = {
    "temperature": Field("number", low=MIN_TEMPERATURE, high=MAX_TEMPERATURE),
    "top_k": Field("int", low=1, high=100_000),
    "top_p": Field("number", low=0, low_open=True, high=1),
    "seed": Field("seed", low=0, high=MAX_SEED),
}
PREDICT = {"text": Field("text", ""), "suggestions": Field("int", 5, 1, 100)}
# Fields that were called otherwise: still read, with a note. (/api/predict's "top_k" named how many
# suggestions, while "top_k" everywhere else samples from the k most probable tokens.)
RENAMED = {"top_k": "suggestions"}
SCORE = {"text": Field("text", ""), "target": Field("text", "")}
GENERATE = {"text": Field("text", ""), "max_tokens": Field("int", 100, 0, 500), **SAMPLING}
TRANSLATE = {"text": Field("text", ""), "prefix": Field("text", ""), "beam_size": Field("int", None, 1, 16),
             "alpha": Field("number", None, 0, MAX_ALPHA),
             "max_length": Field("int", None, 1, 500), "n_best": Field("int", 1, 1, 16), **SAMPLING}


def parse_body(body: bytes, fields: dict[str, Field]) -> dict[str, Any]:
    """The checked request: every field of `fields`, defaults filled in."""
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(f"request body of {len(body)} bytes; at most {MAX_BODY_BYTES} are accepted", 413)
    if not body.strip():
        raise ApiError('the request body is empty; send a JSON object such as {"text": "a man is"}')
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(f"the request body is not valid JSON: {error}") from None
    except ValueError:  # an integer of more digits than Python converts (4,300)
        raise ApiError("the request body has a number of thousands of digits; no field takes one") from None
    except RecursionError:
        raise ApiError("the request body nests too deeply; send a flat JSON object such as "
                       '{"text": "a man is"}') from None
    if not isinstance(data, dict):
        raise ApiError(f"expected a JSON object such as {{\"text\": \"...\"}}, got {type(data).__name__}")
    for old, new in RENAMED.items():
        if old in data and old not in fields and new in fields:
            if new in data:
                raise ApiError(f'fields "{old}" and "{new}": "{old}" is the old name of "{new}"; send only "{new}"')
            log.warning('note: field "%s" is now called "%s"; read as such', old, new)
            data[new] = data.pop(old)
    unknown = [name for name in data if name not in fields]
    if unknown:
        raise ApiError(f'unknown field {json.dumps(unknown[0])}; this endpoint takes: {", ".join(fields)}')
    return {name: field.check(name, data.get(name)) for name, field in fields.items()}
