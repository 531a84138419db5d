"""textseq: LSTM/GRU encoder-decoders with additive attention on Keras 3, from YAML recipes.

>>> import textseq
>>> recipe = textseq.load_recipe("recipes/dates.yaml", overrides=["train.epochs=1"])
>>> summary = textseq.train(recipe, "runs/dates")  # doctest: +SKIP
>>> textseq.Translator.from_run("runs/dates").translate(["3rd of March 1998"])  # doctest: +SKIP
['1998-03-03']
"""

__version__ = "0.1.0"

from textseq.errors import UserError  # noqa: E402
from textseq.recipe import Recipe, load_recipe  # noqa: E402


def __getattr__(name):
    # TensorFlow takes seconds to import; recipe checks and `--help` should not wait for it.
    if name == "train":
        from textseq.training import train
        return train
    if name == "Translator":
        from textseq.inference import Translator
        return Translator
    if name == "evaluate":
        from textseq.evaluation import evaluate
        return evaluate
    raise AttributeError(f"module 'textseq' has no attribute {name!r}")


__all__ = ["Recipe", "Translator", "UserError", "evaluate", "load_recipe", "train"]
