"""The memory an app gives a LiteRT export: what a fresh process gains, at its peak, by loading the
export with `textseq/on_device.py` (as an app copies it) and using it. The interpreter's delegate
packs the weights for its kernels on the first call, so a file's size is not what a phone holds.
numpy, LiteRT and sentencepiece are imported before it counts, as an app has them anyway.

    held = memory_held("translate", Path("exports/de-en-phone"), ["Ein Hund rennt."])  # MB
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "textseq"  # where on_device.py lies

PROBE = """
import json, sys
from pathlib import Path
import ai_edge_litert.interpreter, numpy, sentencepiece
def resident(key):  # kB, the kernel's account of this process
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key)).split()[1])
from on_device import DeviceNextWords, DeviceTranslator
use, folder, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
before = resident("VmRSS:")
if use == "translate":
    model = DeviceTranslator(folder, num_threads=1)
    for text in texts:
        model.translate(text, beam_size=5)
else:
    model = DeviceNextWords(folder, num_threads=1)
    for text in texts:
        model.read(text)
        model.suggestions(3)
print(json.dumps({"held_mb": round((resident("VmHWM:") - before) / 1024, 1)}))
"""


def memory_held(use: str, export: Path, texts: list[str]) -> float:
    """MB of resident memory a fresh process gains by loading `export` and, for `use` "translate",
    translating `texts` with beam 5, or for "type", reading each and asking for 3 next words."""
    done = subprocess.run([sys.executable, "-c", PROBE, use, str(export), json.dumps(texts)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(APP)}, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["held_mb"]
