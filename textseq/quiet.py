"""TensorFlow without its start-up notices.

TensorFlow 2.21 prints C++ notices (oneDNN, CUDA drivers, absl's "All log messages before
absl::InitializeLog()") while it is imported, through absl, before any log level applies:
TF_CPP_MIN_LOG_LEVEL does not hide them. So stderr points at /dev/null while TensorFlow loads;
Python errors still surface (stderr is restored before they propagate). `import textseq` arranges
this for whatever imports TensorFlow next, unless the user chose a log level (TF_CPP_MIN_LOG_LEVEL).

>>> with stderr_silenced():
...     import tensorflow  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys


@contextlib.contextmanager
def stderr_silenced():
    """File descriptor 2 points at /dev/null inside the block (C++ code writes there directly)."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _QuietTensorFlow(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as Python would, and loads it with stderr silenced."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once, and so that the real finders answer the lookup below
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            load = spec.loader.exec_module

            def exec_module(module):
                with stderr_silenced():
                    load(module)

            spec.loader.exec_module = exec_module
        return spec


def hide_tensorflow_notices() -> None:
    """Silences TensorFlow's start-up notices, if it is not loaded yet and no log level was chosen."""
    if "tensorflow" in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    if not any(isinstance(finder, _QuietTensorFlow) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlow())
