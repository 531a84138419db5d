import pytest

from textseq.errors import UserError
from textseq.recipe import ModelConfig, Recipe, load_recipe, recipe_differences, recipe_from_dict

from conftest import ROOT


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_defaults_and_shipped_recipe_load():
    assert recipe_from_dict({}) == Recipe()
    recipe = load_recipe(ROOT / "recipes" / "dates.yaml")
    assert recipe.vocab.level == "char" and recipe.data.source == "dates"


def test_bad_enum_names_key_value_and_choices(tmp_path):
    path = write(tmp_path, "model:\n  units: 64\n  cell: lstn\n")
    with pytest.raises(UserError) as error:
        load_recipe(path)
    assert str(error.value) == f"{path}:3: model.cell must be one of lstm, gru; got 'lstn'"


def test_unknown_key_suggests_the_nearest(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 2\n  bach_size: 8\n")
    with pytest.raises(UserError, match=r"r.yaml:3: unknown key train.bach_size; did you mean train.batch_size\?"):
        load_recipe(path)


def test_unknown_section_suggests_the_nearest():
    with pytest.raises(UserError, match="unknown key modle; did you mean model"):
        recipe_from_dict({"modle": {}})


@pytest.mark.parametrize("override, message", [
    ("model.units=0", "model.units must be at least 1; got 0"),
    ("model.units=many", "model.units must be an integer; got 'many'"),
    ("model.dropout=1.0", "model.dropout must be less than 1.0; got 1.0"),
    ("train.batch_size=0", "train.batch_size must be at least 1; got 0"),
    ("train.learning_rate=0", "train.learning_rate must be greater than 0.0; got 0.0"),
    ("model.bidirectional=maybe", "model.bidirectional must be true or false; got 'maybe'"),
    ("model.units=7", "model.units must be even with a bidirectional encoder"),
])
def test_bad_values_name_the_override(override, message):
    with pytest.raises(UserError) as error:
        recipe_from_dict({}, [override])
    assert str(error.value).startswith(f"--set {override}: {message}")


def test_overrides_apply_with_yaml_types():
    recipe = recipe_from_dict({"model": {"units": 32}}, ["model.units=128", "train.clipnorm=null",
                                                         "train.learning_rate=0.5", "model.cell=gru"])
    assert (recipe.model.units, recipe.train.clipnorm, recipe.train.learning_rate, recipe.model.cell) == (
        128, None, 0.5, "gru")


def test_override_without_equals_is_explained():
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        recipe_from_dict({}, ["model.units"])


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    path = write(tmp_path, "model:\n  units: [1, 2\n")
    with pytest.raises(UserError, match=r"r.yaml:\d+:\d+: YAML syntax error"):
        load_recipe(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(UserError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="is a directory"):
        load_recipe(tmp_path)


def test_resolved_recipe_round_trips_through_yaml(tmp_path):
    recipe = recipe_from_dict({}, ["model.cell=gru", "train.clipnorm=null"])
    path = write(tmp_path, recipe.to_yaml())
    assert load_recipe(path) == recipe


def test_differences_list_changed_keys():
    assert recipe_differences(Recipe(), recipe_from_dict({}, ["model.units=64", "train.epochs=3"])) == [
        "model.units", "train.epochs"]


def test_model_config_is_frozen():
    with pytest.raises(Exception):
        ModelConfig().units = 3


def test_every_shipped_recipe_is_valid():
    recipes = sorted((ROOT / "recipes").glob("*.yaml"))
    assert len(recipes) >= 5
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe.train.epochs >= 1, path


def test_the_old_export_section_is_read_as_decode_with_a_note(tmp_path, caplog):
    old = tmp_path / "old.yaml"
    old.write_text("export:\n  max_output_length: 12\n  beam_size: 4\n")
    with caplog.at_level("INFO", logger="textseq.recipe"):
        recipe = load_recipe(old, ["export.alpha=0.6"])
    assert (recipe.decode.max_length, recipe.decode.beam_size, recipe.decode.alpha) == (12, 4, 0.6)
    assert f"note: {old}: the export: section is now called decode: (export.max_output_length is " \
           "decode.max_length); read as such" in caplog.text
    assert "export" not in recipe.to_yaml() and "decode:\n  max_length: 12" in recipe.to_yaml()
    both = tmp_path / "both.yaml"
    both.write_text("export:\n  beam_size: 4\ndecode:\n  beam_size: 2\n")
    with pytest.raises(UserError, match="has both export: and decode:; export: is the old name of decode:"):
        load_recipe(both)


def test_decode_settings_are_checked_where_they_are_written(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("decode:\n  beam_size: 2\n  n_best: 3\n")
    with pytest.raises(UserError, match=rf"{recipe}:1: decode.n_best: 3 is more than decode.beam_size 2"):
        load_recipe(recipe)
    with pytest.raises(UserError, match=r"--set decode.temperature=0: decode.temperature must be at least 0.001"):
        load_recipe(recipe, ["decode.n_best=1", "decode.temperature=0"])


def test_every_size_a_recipe_sets_has_an_upper_bound_that_is_enforced():
    import dataclasses

    sections = {f.name: f.default_factory for f in dataclasses.fields(Recipe) if f.default_factory is not dataclasses.MISSING}
    checked = 0
    for section, config in sections.items():
        for field in dataclasses.fields(config):
            checks = field.metadata
            if not {"min", "above"} & set(checks):
                continue  # not a number
            assert {"max", "below"} & set(checks), f"{section}.{field.name} has no upper bound"
            if "max" in checks and isinstance(checks["max"], int):
                with pytest.raises(UserError, match=f"{section}.{field.name} must be at most {checks['max']}"):
                    recipe_from_dict({}, [f"{section}.{field.name}={checks['max'] + 1}"])
                checked += 1
    assert checked >= 25
    with pytest.raises(UserError, match=r"data.train\[0\].weight must be a positive number of at most 1e\+06"):
        recipe_from_dict({"data": {"source": "parallel", "train": [{"files": "a", "weight": 1e308}]}, "train": {"steps": 5}})


def test_a_recipe_file_of_megabytes_is_refused_at_once(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("data:\n  source: dates\n" + "# padding\n" * 200_000)
    with pytest.raises(UserError, match="huge.yaml: 2,000,022 bytes; a recipe is a short YAML file"):
        load_recipe(path)


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("model:\n  units: 64\n  cell: gru\n  units: 128\n")
    with pytest.raises(UserError, match="twice.yaml:4: model.units is written twice \\(also on line 2\\); keep one"):
        load_recipe(path)


def test_a_character_coverage_sentencepiece_refuses_is_refused_by_its_recipe_key():
    with pytest.raises(UserError, match="vocab.character_coverage must be at least 0.98; got 0.5"):
        recipe_from_dict({"vocab": {"level": "sentencepiece", "character_coverage": 0.5}})


def test_a_token_budget_below_the_longest_pair_is_refused_before_any_data_is_read():
    with pytest.raises(UserError, match="train.batch_tokens: 100 is less than the longest pair kept \\(128 tokens"):
        recipe_from_dict({"data": {"source": "parallel", "train": "a", "validation": "b", "test": "b", "source_language": "de",
                                   "target_language": "en"}, "train": {"steps": 5, "batch_tokens": 100}})


def test_numbers_in_scientific_notation_without_a_dot_are_numbers():
    """PyYAML (YAML 1.1) reads 1e-4 as text; a recipe means the number."""
    assert recipe_from_dict({"train": {"learning_rate": "3e-4"}}).train.learning_rate == 3e-4
    assert recipe_from_dict({}, ["train.learning_rate=1e-12"]).train.learning_rate == 1e-12
    with pytest.raises(UserError, match="train.learning_rate must be a number; got 'fast'"):
        recipe_from_dict({}, ["train.learning_rate=fast"])


def test_subword_regularization_is_refused_in_a_streamed_run_which_would_not_apply_it():
    raw = {"data": {"source": "parallel", "train": "a", "validation": "v", "test": "t", "source_language": "de",
                    "target_language": "en"}, "vocab": {"level": "sentencepiece", "subword_alpha": 0.1},
           "train": {"steps": 10, "validate_every": 10, "checkpoint_every": 10}}
    with pytest.raises(UserError, match="vocab.subword_alpha resamples the segmentations of pairs held in memory"):
        recipe_from_dict(raw)
    assert recipe_from_dict(raw, ["train.steps=null"]).vocab.subword_alpha == 0.1
