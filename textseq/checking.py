"""`textseq check`: validate a recipe and its data without training, and summarise them.

>>> check(load_recipe("recipes/dates.yaml"))["parameters"]  # doctest: +SKIP
193856
"""

from __future__ import annotations

from textseq.data.sources import SPLITS, load_pairs
from textseq.distribute import check_tf_config
from textseq.data.tokenizer import Tokenizer
from textseq.models import build_seq2seq
from textseq.models.recurrent import fast_path_warnings
from textseq.recipe import Recipe
from textseq.training import build_vocabularies


def check(recipe: Recipe) -> dict:
    """Reads every split, builds the vocabularies and the model; returns what training would use."""
    cluster = {}
    if recipe.train.strategy == "multi_worker":  # TF_CONFIG is read, but no worker is contacted
        tf_config = check_tf_config()
        tasks = tf_config["cluster"]
        cluster = {"workers": sum(len(tasks.get(job, [])) for job in ("chief", "worker")),
                   "task": f"{tf_config['task']['type']} {tf_config['task']['index']}"}
    pairs = {split: load_pairs(recipe.data, split) for split in SPLITS}
    source_vocab, target_vocab = build_vocabularies(pairs["train"], recipe.vocab)
    source, target = Tokenizer(source_vocab), Tokenizer(target_vocab)
    longest = {}
    for side, tokenizer in (("source", source), ("target", target)):
        texts = [pair[side == "target"] for pair in pairs["train"]]
        longest[side] = int(tokenizer.encode(texts).row_lengths().numpy().max(initial=0))
    model = build_seq2seq(recipe.model, source_vocab.size, target_vocab.size)
    model({"source": source.encode(["a b"]).to_tensor(), "target_in": target.encode(["a b"]).to_tensor()})
    return {
        "task": recipe.task,
        **{f"{split}_examples": len(pairs[split]) for split in SPLITS},
        "source_vocabulary": source_vocab.size,
        "target_vocabulary": target_vocab.size,
        "longest_source_tokens": longest["source"],
        "longest_target_tokens": longest["target"],
        "truncated_sources": longest["source"] > recipe.data.max_source_length,
        "parameters": model.count_params(),
        "strategy": recipe.train.strategy,
        **cluster,
        "warnings": fast_path_warnings(recipe.model),
        "precision": recipe.train.precision,
    }
