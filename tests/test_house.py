"""The shape of the code base: what keeps it easy to change as it grows (issue 33's bounds).

Each bound is checked on the source, so a change that breaks one fails here, naming the place."""

import ast
import re
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "textseq"
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The textseq modules a module imports (anywhere in it), each as the module file that holds it."""
    known = {module_name(p) for p in MODULES}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", None) == "TYPE_CHECKING" for inner in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: not an import when the code runs
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in known}
    return found - {module_name(path)}


GRAPH = {module_name(path): imports_of(path) for path in MODULES}


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for name in GRAPH[todo.pop()] - seen:
            seen.add(name)
            todo.append(name)
    return seen


def test_no_module_is_over_450_lines_and_training_is_under_300():
    lengths = {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
               for path in MODULES if path.name != "cli.py"}  # cli.py: mostly --help text
    assert max(lengths.values()) <= 450, {name: n for name, n in lengths.items() if n > 450}
    assert lengths["textseq/training.py"] < 300


def test_no_class_is_over_120_lines():
    long = {f"{path.relative_to(ROOT)}:{node.name}": node.end_lineno - node.lineno + 1 for path in MODULES
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 120}
    assert not long


def test_recipe_rules_sit_in_their_sections_and_stay_short():
    tree = ast.parse((PACKAGE / "recipe" / "sections.py").read_text(encoding="utf-8"))
    rules = {f"{cls.name}.{fn.name}": fn.end_lineno - fn.lineno + 1 for cls in tree.body
             if isinstance(cls, ast.ClassDef) for fn in cls.body
             if isinstance(fn, ast.FunctionDef) and fn.name.startswith(("check", "_check"))}
    assert {"DataConfig.check", "VocabConfig.check", "TrainConfig.check", "Recipe.check"} <= set(rules)
    assert max(rules.values()) < 30, rules
    assert "_check_together" not in (PACKAGE / "recipe" / "loading.py").read_text(encoding="utf-8")


def test_only_data_and_the_recipe_ask_which_vocabulary_level_a_run_has():
    asking = [f"{path.relative_to(ROOT)}:{number}" for path in MODULES
              if not path.is_relative_to(PACKAGE / "data") and not path.is_relative_to(PACKAGE / "recipe")
              for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
              if re.search(r"(vocab|tokenizer|target|source|config)\.level\b", line)]
    assert not asking


def test_each_corpus_message_is_written_once():
    source = "\n".join(path.read_text(encoding="utf-8") for path in MODULES)
    for phrase in ("not UTF-8; convert the file", "line i of one must translate", "tab-separated column(s)",
                   "with an empty side (the first"):
        assert source.count(phrase) == 1, phrase


def test_the_import_graph_has_no_cycles_and_training_does_not_reach_inference():
    for name in GRAPH:
        assert name not in reachable(name), f"{name} imports itself through {sorted(reachable(name))}"
    assert "textseq.inference" not in reachable("textseq.training")
    lower = ("textseq.layers", "textseq.models", "textseq.data", "textseq.kernels", "textseq.decoding")
    for name in GRAPH:  # nothing below reaches up to what runs, trains or serves
        if name.startswith(lower):
            upward = {m for m in reachable(name) if m.split(".")[1:2] in (["training"], ["inference"], ["cli"],
                                                                         ["serve"], ["runs"], ["export"])}
            assert not upward, f"{name} reaches {sorted(upward)}"
