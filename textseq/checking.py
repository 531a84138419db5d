"""`textseq check`: validate a recipe and its data without training, and summarise them.

>>> check(load_recipe("recipes/dates.yaml"))["parameters"]  # doctest: +SKIP
193856
"""

from __future__ import annotations

from textseq.constants import UNK
from textseq.data.sources import SPLITS, load_pairs
from textseq.data.tasks import StreamedData, TaskData
from textseq.distribute import check_tf_config, resolve_precision
from textseq.models import build_seq2seq
from textseq.models.recurrent import fast_path_warnings
from textseq.recipe import Recipe


def check(recipe: Recipe) -> dict:
    """Reads every split, builds the vocabularies and the model; returns what training would use."""
    cluster = {}
    if recipe.train.strategy == "multi_worker":  # TF_CONFIG is read, but no worker is contacted
        tf_config = check_tf_config()
        tasks = tf_config["cluster"]
        cluster = {"workers": sum(len(tasks.get(job, [])) for job in ("chief", "worker")),
                   "this_worker": f"{tf_config['task']['type']} {tf_config['task']['index']}"}
    data = TaskData.load(recipe, splits=SPLITS)
    if isinstance(data, StreamedData):
        return streamed_summary(recipe, data)
    summary = {"task": recipe.task, **{f"{split}_{data.unit}": int(data.examples[split][0].nrows()) for split in SPLITS}}
    if recipe.task == "language_model":
        for split in SPLITS:
            targets = data.examples[split][2].flat_values
            summary[f"{split}_tokens"] = int(targets.shape[0])
            summary[f"{split}_unknown_share"] = round(float((targets == UNK).numpy().mean()), 4)
        summary["vocabulary"] = data.target.vocab_size
    else:
        pairs = load_pairs(recipe.data, "train")
        longest = {side: int(tokenizer.encode([pair[i] for pair in pairs]).row_lengths().numpy().max(initial=0))
                   for i, (side, tokenizer) in enumerate((("source", data.source), ("target", data.target)))}
        summary.update(source_vocabulary=data.source.vocab_size, target_vocabulary=data.target.vocab_size,
                       longest_source_tokens=longest["source"], longest_target_tokens=longest["target"],
                       truncated_sources=longest["source"] > recipe.data.max_source_length)
    model = build_seq2seq(recipe.model, data.source.vocab_size, data.target.vocab_size,
                          one_vocabulary=recipe.vocab.shared)
    model({"source": data.train[0][:1].to_tensor(shape=[1, 2]), "target_in": data.train[1][:1].to_tensor(shape=[1, 2])})
    return {
        **summary,
        "parameters": model.count_params(),
        "strategy": recipe.train.strategy,
        **cluster,
        "warnings": fast_path_warnings(recipe.model),
        "precision": resolve_precision(recipe.train.precision),
    }


def streamed_summary(recipe: Recipe, data: StreamedData) -> dict:
    """`check` of a streamed corpus (train.steps): the one pass's count, not the pairs themselves."""
    model = build_seq2seq(recipe.model, data.source.vocab_size, data.target.vocab_size,
                          one_vocabulary=recipe.vocab.shared)
    validation = data.examples["validation"]
    model({"source": validation[0][:1].to_tensor(shape=[1, 2]), "target_in": validation[1][:1].to_tensor(shape=[1, 2])})
    return {
        "task": recipe.task,
        "train_pairs": data.train_pairs,
        "train_shards": sum(len(shards) for shards in data.corpora),
        **{f"{split}_pairs": int(data.examples[split][0].nrows()) for split in ("validation", "test")},
        "too_long_share": round(data.too_long_share, 4),
        "source_vocabulary": data.source.vocab_size,
        "target_vocabulary": data.target.vocab_size,
        "parameters": model.count_params(),
        "strategy": recipe.train.strategy,
        "warnings": fast_path_warnings(recipe.model),
        "precision": resolve_precision(recipe.train.precision),
    }

