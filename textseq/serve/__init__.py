"""`textseq serve`: a local web page and JSON API over a trained run.

>>> serve("runs/multi30k-en-lm", port=8000)  # doctest: +SKIP
serving runs/multi30k-en-lm (language_model) at http://127.0.0.1:8000/ -- Ctrl-C stops
"""

from textseq.serve.app import create_app
from textseq.serve.server import serve

__all__ = ["create_app", "serve"]
