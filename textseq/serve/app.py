"""The web app over one loaded run (or a LiteRT translator export): three static files and a JSON
API (Starlette).

Routes: `/` (the page), `/app.js`, `/style.css`, and under `/api/`: `info` (GET), `predict`,
`generate` (language-model runs), `translate` (translation runs), all POST with a JSON object.
Answers carry the same fields as the CLI's `--json` output; every error is
`{"error": message, "status": code}` with a 4xx code for anything the client can fix. The page's
files are read once at start, and no route reads or writes any other file.

Two doors stay shut to other web pages open in the user's browser: a POST must say
`Content-Type: application/json` (which a page on another site cannot send without the browser
asking this server first, and it never says yes), and with `allowed_hosts` a request must be
addressed to one of those names (a page that points its own name at 127.0.0.1, DNS rebinding,
still sends its own name).

>>> app = create_app("runs/multi30k-en-lm")  # doctest: +SKIP
>>> # uvicorn.run(app) or textseq.serve.serve("runs/multi30k-en-lm")
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from textseq import __version__
from textseq.errors import UserError
from textseq.inference import LanguageModel, Translator, load, prediction_record, translation_record
from textseq.exported import ExportedTranslator, litert_translator
from textseq.serve.requests import (GENERATE, MAX_BODY_BYTES, MAX_TEXT_CHARACTERS, MAX_TEXT_TOKENS, PREDICT,
                                    SCORE, TRANSLATE, ApiError, parse_body)

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PAGES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/style.css": ("style.css", "text/css; charset=utf-8")}


class Api:
    """The API's work, one method per endpoint: a checked request dict in, a JSON-ready dict out."""

    def __init__(self, loaded: LanguageModel | Translator | ExportedTranslator, name: str):
        self.loaded, self.name = loaded, name
        if isinstance(loaded, Translator):  # one text per request, for as long as it runs: worth XLA's compiles
            loaded.texts.xla_for_one_text = True

    def info(self) -> dict:
        loaded = self.loaded
        about = {"task": loaded.task, "run": self.name, "textseq": __version__, "level": loaded.target.describe()["level"],
                 "source_vocab_size": loaded.source.vocab_size, "target_vocab_size": loaded.target.vocab_size,
                 "limits": {"characters": MAX_TEXT_CHARACTERS, "tokens": MAX_TEXT_TOKENS, "body_bytes": MAX_BODY_BYTES}}
        if loaded.task == "translate":
            about["decoding"] = loaded.options().describe()
        else:
            about.update(context=loaded.recipe.data.context, continuation=loaded.recipe.data.continuation)
        return about

    def predict(self, request: dict) -> dict:
        model = self._task("language_model", "predict")
        self._check_tokens(request["text"])
        return prediction_record(model, request["text"], request["suggestions"])

    def generate(self, request: dict) -> dict:
        model = self._task("language_model", "generate")
        self._check_tokens(request["text"])
        continuation = model.generate(request["text"], request["max_tokens"], request["temperature"],
                                      request["top_k"], request["top_p"], request["seed"])
        return {"text": request["text"], "continuation": continuation}

    def translate(self, request: dict) -> dict:
        translator = self._task("translate", "translate")
        if not request["text"].strip():
            raise ApiError('field "text": empty; give the text to translate')
        self._check_tokens(request["text"])
        options = translator.options(**{key: value for key, value in request.items() if key not in ("text", "prefix")})
        hypotheses, found = translator.explain(request["text"], options, request["prefix"] or None)
        return {**translation_record(request["text"], hypotheses),
                "attention": {"source_tokens": found.source_tokens, "output_tokens": found.output_tokens,
                              "weights": found.weights.astype(float).round(6).tolist()}}

    def score(self, request: dict) -> dict:
        """Translation: how probable `target` is given `text`; a language model: each line of `text`."""
        self._check_tokens(request["text"])
        if self.loaded.task == "translate":
            return self.loaded.score([(request["text"], request["target"])])[0]
        if request["target"]:
            raise ApiError('field "target": a language model scores the lines of "text"; leave "target" out')
        return {"text": request["text"], "lines": self.loaded.score(request["text"])}

    def warm_up(self) -> None:
        """Traces the graphs the page needs first, so its first request answers at once."""
        if self.loaded.task == "language_model":
            self.predict(parse_body(b"{}", PREDICT))
        else:
            self.translate(parse_body(b'{"text": "a"}', TRANSLATE))

    def _task(self, task: str, endpoint: str):
        if self.loaded.task != task:
            other = "/api/translate" if self.loaded.task == "translate" else "/api/predict and /api/generate"
            raise ApiError(f"/api/{endpoint} needs a {task} run; {self.name} is a {self.loaded.task} run "
                           f"(it answers {other})", 404)
        return self.loaded

    def _check_tokens(self, text: str) -> None:
        tokens = len(self.loaded.tokenize(text)[1])
        if tokens > MAX_TEXT_TOKENS:
            raise ApiError(f'field "text": {tokens} tokens; at most {MAX_TEXT_TOKENS} are accepted', 413)


def load_served(path: Path) -> LanguageModel | Translator | ExportedTranslator:
    """The run in `path`, or the LiteRT translator export there (see `textseq.exported`)."""
    return ExportedTranslator(path) if litert_translator(path) else load(path)


def create_app(run_dir: str | Path, allowed_hosts: Iterable[str] | None = None) -> Starlette:
    """The app for the run in `run_dir`, loaded and warmed up; with `allowed_hosts`, it answers only
    requests whose Host header names one of them (any port)."""
    api = Api(load_served(Path(run_dir)), Path(run_dir).resolve().name)
    api.warm_up()

    def endpoint(method, fields):
        async def handle(request: Request) -> Response:
            check_json_content_type(request)
            body = parse_body(await read_body(request), fields)
            try:
                return JSONResponse(await run_in_threadpool(method, body))
            except (UserError, ValueError) as error:  # settings the model cannot honour, e.g. n_best > beam
                raise ApiError(str(error)) from None
        return handle

    async def info(_: Request) -> Response:
        return JSONResponse(api.info())

    routes = [Route(path, static_file((STATIC / name).read_bytes(), media_type), methods=["GET"])
              for path, (name, media_type) in PAGES.items()]
    routes += [Route("/api/info", info, methods=["GET"]),
               Route("/api/predict", endpoint(api.predict, PREDICT), methods=["POST"]),
               Route("/api/generate", endpoint(api.generate, GENERATE), methods=["POST"]),
               Route("/api/translate", endpoint(api.translate, TRANSLATE), methods=["POST"]),
               Route("/api/score", endpoint(api.score, SCORE), methods=["POST"])]
    middleware = [] if allowed_hosts is None else [Middleware(HostGuard, allowed=allowed_hosts)]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={
        ApiError: api_error, HTTPException: http_error, Exception: internal_error})
    app.state.task = api.loaded.task
    return app


def check_json_content_type(request: Request) -> None:
    """Refuses (415) a body that does not say it is JSON: the kinds a web page may post anywhere
    unasked (text/plain, forms) never reach the model."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(f'send the body as JSON with the header "Content-Type: application/json"; got '
                       f'{json.dumps(media_type or "no Content-Type")}', 415)


class HostGuard:
    """ASGI middleware: answers only requests addressed to an allowed host name (403 otherwise)."""

    def __init__(self, app, allowed: Iterable[str]):
        self.app, self.allowed = app, {host_name(name) for name in allowed}

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            if host_name(host) not in self.allowed:
                response = error_response(
                    f"Host {json.dumps(host or 'missing')} is not served here; this server answers requests to "
                    f"{', '.join(sorted(self.allowed))} (textseq serve --allowed-host NAME adds a name, e.g. "
                    "behind a reverse proxy)", 403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_name(host: str) -> str:
    """The name part of a Host header, lower-cased: `Example.org:8000` -> `example.org`, `[::1]:80` -> `[::1]`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[:host.find("]") + 1] if "]" in host else host
    if host.count(":") > 1:
        return f"[{host}]"  # a bare IPv6 address, as given to --allowed-host
    return host.split(":")[0]


async def read_body(request: Request) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed MAX_BODY_BYTES."""
    too_large = ApiError(f"request body too large; at most {MAX_BODY_BYTES} bytes are accepted", 413)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise too_large
    return bytes(body)


def static_file(content: bytes, media_type: str):
    async def handle(_: Request) -> Response:
        return Response(content, media_type=media_type, headers={"Cache-Control": "no-cache"})
    return handle


def error_response(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


async def api_error(_: Request, error: ApiError) -> Response:
    return error_response(error.message, error.status)


async def http_error(request: Request, error: HTTPException) -> Response:
    messages = {404: f"no such page: {request.url.path} (the API is under /api/: info, predict, generate, translate)",
                405: f"{request.method} is not allowed on {request.url.path}" + (
                    "; send a POST with a JSON object" if request.url.path.startswith("/api/") else "")}
    return error_response(messages.get(error.status_code, str(error.detail)), error.status_code)


async def internal_error(request: Request, error: Exception) -> Response:
    log.exception("error while answering %s %s", request.method, request.url.path)
    return error_response(f"internal error while answering {request.url.path}; the server's log has the details", 500)
