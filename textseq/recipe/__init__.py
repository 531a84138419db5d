"""Recipes: the typed sections (`sections`), what a value may be (`values`) and loading YAML with
`--set a.b=c` overrides (`loading`). Everything a caller needs is importable from here.

>>> recipe = load_recipe("recipes/dates.yaml", overrides=["model.cell=gru"])
>>> recipe.model.cell
'gru'
"""

from textseq.recipe.loading import describe_defaults, load_recipe, recipe_differences, recipe_from_dict
from textseq.recipe.sections import DataConfig, DecodingOptions, ModelConfig, Recipe, TrainConfig, VocabConfig
from textseq.recipe.values import MAX_ALPHA, MAX_SEED, MAX_TEMPERATURE, MIN_TEMPERATURE, Corpus, Files

__all__ = ["Corpus", "DataConfig", "DecodingOptions", "Files", "MAX_ALPHA", "MAX_SEED", "MAX_TEMPERATURE",
           "MIN_TEMPERATURE", "ModelConfig", "Recipe", "TrainConfig", "VocabConfig", "describe_defaults",
           "load_recipe", "recipe_differences", "recipe_from_dict"]
