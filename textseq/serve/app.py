"""The web app over one loaded run: three static files and a JSON API (Starlette).

Routes: `/` (the page), `/app.js`, `/style.css`, and under `/api/`: `info` (GET), `predict`,
`generate` (language-model runs), `translate` (translation runs), all POST with a JSON object.
Answers carry the same fields as the CLI's `--json` output; every error is
`{"error": message, "status": code}` with a 4xx code for anything the client can fix. The page's
files are read once at start, and no route reads or writes any other file.

>>> app = create_app("runs/multi30k-en-lm")  # doctest: +SKIP
>>> # uvicorn.run(app) or textseq.serve.serve("runs/multi30k-en-lm")
"""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from textseq import __version__
from textseq.errors import UserError
from textseq.inference import LanguageModel, Translator, load, prediction_record, translation_record
from textseq.serve.requests import (GENERATE, MAX_BODY_BYTES, MAX_TEXT_CHARACTERS, MAX_TEXT_TOKENS, PREDICT,
                                    TRANSLATE, ApiError, parse_body)

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PAGES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/style.css": ("style.css", "text/css; charset=utf-8")}


class Api:
    """The API's work, one method per endpoint: a checked request dict in, a JSON-ready dict out."""

    def __init__(self, loaded: LanguageModel | Translator, name: str):
        self.loaded, self.name = loaded, name

    def info(self) -> dict:
        loaded = self.loaded
        about = {"task": loaded.task, "run": self.name, "textseq": __version__, "level": loaded.target.level,
                 "source_vocab_size": loaded.source.vocab_size, "target_vocab_size": loaded.target.vocab_size,
                 "limits": {"characters": MAX_TEXT_CHARACTERS, "tokens": MAX_TEXT_TOKENS, "body_bytes": MAX_BODY_BYTES}}
        if isinstance(loaded, Translator):
            about["decoding"] = loaded.options().describe()
        else:
            about.update(context=loaded.recipe.data.context, continuation=loaded.recipe.data.continuation)
        return about

    def predict(self, request: dict) -> dict:
        model = self._task(LanguageModel, "predict")
        self._check_tokens(request["text"])
        return prediction_record(model, request["text"], request["top_k"])

    def generate(self, request: dict) -> dict:
        model = self._task(LanguageModel, "generate")
        self._check_tokens(request["text"])
        continuation = model.generate(request["text"], request["max_tokens"], request["temperature"],
                                      request["top_k"], request["top_p"], request["seed"])
        return {"text": request["text"], "continuation": continuation}

    def translate(self, request: dict) -> dict:
        translator = self._task(Translator, "translate")
        if not request["text"].strip():
            raise ApiError('field "text": empty; give the text to translate')
        self._check_tokens(request["text"])
        options = translator.options(beam_size=request["beam"], alpha=request["alpha"],
                                     max_length=request["max_length"], n_best=request["n_best"],
                                     temperature=request["temperature"], top_k=request["top_k"],
                                     top_p=request["top_p"], seed=request["seed"])
        hypotheses, found = translator.explain(request["text"], options)
        return {**translation_record(request["text"], hypotheses),
                "attention": {"source_tokens": found.source_tokens, "output_tokens": found.output_tokens,
                              "weights": found.weights.astype(float).round(6).tolist()}}

    def warm_up(self) -> None:
        """Traces the graphs the page needs first, so its first request answers at once."""
        if isinstance(self.loaded, LanguageModel):
            self.predict(parse_body(b"{}", PREDICT))
        else:
            self.translate(parse_body(b'{"text": "a"}', TRANSLATE))

    def _task(self, kind, endpoint: str):
        if not isinstance(self.loaded, kind):
            other = "/api/translate" if isinstance(self.loaded, Translator) else "/api/predict and /api/generate"
            raise ApiError(f"/api/{endpoint} needs a {kind.task} run; {self.name} is a {self.loaded.task} run "
                           f"(it answers {other})", 404)
        return self.loaded

    def _check_tokens(self, text: str) -> None:
        tokens = len(self.loaded.tokenize(text)[1])
        if tokens > MAX_TEXT_TOKENS:
            raise ApiError(f'field "text": {tokens} tokens; at most {MAX_TEXT_TOKENS} are accepted', 413)


def create_app(run_dir: str | Path) -> Starlette:
    """The app for the run in `run_dir`, loaded and warmed up."""
    api = Api(load(run_dir), Path(run_dir).resolve().name)
    api.warm_up()

    def endpoint(method, fields):
        async def handle(request: Request) -> Response:
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
               Route("/api/translate", endpoint(api.translate, TRANSLATE), methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers={
        ApiError: api_error, HTTPException: http_error, Exception: internal_error})
    app.state.task = api.loaded.task
    return app


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
