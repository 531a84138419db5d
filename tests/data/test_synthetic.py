import datetime as dt

from textseq.data.synthetic import FORMATS, WEEKDAYS, dates_examples, ordinal, split_days


def test_generator_is_deterministic_by_seed():
    assert dates_examples("train", 200, seed=3) == dates_examples("train", 200, seed=3)
    assert dates_examples("train", 200, seed=3) != dates_examples("train", 200, seed=4)


def test_splits_never_share_a_date():
    pools = split_days(seed=0, validation_days=1000, test_days=2000)
    train, validation, test = (set(pools[s]) for s in ("train", "validation", "test"))
    assert len(test) == 2000 and len(validation) == 1000
    assert not (train & validation) and not (train & test) and not (validation & test)
    generated = {split: {iso for _, iso in dates_examples(split, n, seed=0)}
                 for split, n in (("train", 20000), ("validation", 1000), ("test", 2000))}
    assert not (generated["train"] & generated["test"]) and not (generated["train"] & generated["validation"])
    assert len(generated["test"]) == 2000  # each held-out example is a distinct date


def test_at_least_fifteen_formats_all_used():
    assert len(FORMATS) >= 15
    day = dt.date(1998, 3, 3)
    rendered = {name: fmt(day) for name, fmt in FORMATS.items()}
    assert rendered["ordinal of month"] == "3rd of March 1998"
    assert rendered["short weekday dotted"] == "Tue, 03.03.98"
    assert rendered["lower month day year"] == "march 3 1998"
    assert rendered["year slash month slash day"] == "1998/3/3"
    assert len(set(rendered.values())) == len(FORMATS)


def test_every_source_has_one_reading():
    # The sources of different days never coincide, so the task has a single right answer.
    days = [dt.date(1950, 1, 1) + dt.timedelta(days=i) for i in range(0, 36525, 7)]
    for name, fmt in FORMATS.items():
        rendered = [fmt(d) for d in days]
        assert len(set(rendered)) == len(days), name


def test_targets_are_iso_and_weekdays_true():
    for source, target in dates_examples("test", 500, seed=1):
        day = dt.date.fromisoformat(target)
        assert dt.date(1950, 1, 1) <= day <= dt.date(2049, 12, 31)
        for weekday in WEEKDAYS:
            if source.lower().startswith(weekday.lower()[:3]):
                assert day.weekday() == WEEKDAYS.index(weekday)


def test_ordinals():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]
