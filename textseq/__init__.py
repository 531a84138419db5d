"""textseq: LSTM/GRU encoder-decoders with additive attention on Keras 3, from YAML recipes.

>>> import textseq
>>> recipe = textseq.load_recipe("recipes/dates.yaml", overrides=["train.epochs=1"])
>>> summary = textseq.train(recipe, "runs/dates")  # doctest: +SKIP
>>> textseq.Translator.from_run("runs/dates").translate(["3rd of March 1998"])  # doctest: +SKIP
['1998-03-03']
>>> textseq.load("runs/multi30k-en-lm").predict(["a man is riding a"], k=3)  # doctest: +SKIP
[[Prediction(token='bike', probability=0.31), ...]]
>>> from textseq.export import export; export("runs/dates", "exports/dates")  # doctest: +SKIP
"""

__version__ = "0.1.0"

from textseq.quiet import hide_tensorflow_notices  # noqa: E402

hide_tensorflow_notices()  # before anything imports TensorFlow; see textseq.quiet

from textseq.errors import UserError  # noqa: E402
from textseq.recipe import Recipe, load_recipe  # noqa: E402


# TensorFlow takes seconds to import; recipe checks and `--help` should not wait for it.
_LAZY = {"train": "textseq.training", "Translator": "textseq.inference", "LanguageModel": "textseq.inference",
         "load": "textseq.inference", "evaluate": "textseq.evaluation"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'textseq' has no attribute {name!r}")


__all__ = ["LanguageModel", "Recipe", "Translator", "UserError", "evaluate", "load", "load_recipe", "train"]
