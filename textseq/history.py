"""metrics.csv: one row per finished epoch (per checkpoint with train.steps, its step in `step`).

Rows are kept in step with the checkpoints: a resumed run drops the rows of an epoch whose commit a
crash interrupted, which it trains again. The file is replaced whole at each write.

>>> history = MetricsLog(Path("runs/dates/metrics.csv"))  # doctest: +SKIP
>>> history.rows()[1][0]["val_loss"]  # doctest: +SKIP
'0.4213'
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from textseq.errors import UserError
from textseq.files import write_atomically


class MetricsLog:
    def __init__(self, path: Path):
        self.path = path

    def keep(self, epochs: int, metrics: dict | None = None) -> None:
        """The rows of the first `epochs` epochs, plus `metrics` as row `epochs`; rows beyond are dropped."""
        header, rows = self.rows()
        rows = [row for row in rows if _epoch_index(row) is not None and _epoch_index(row) < epochs]
        if metrics is not None:
            header = header or ["epoch", *sorted(metrics)]
            header += [key for key in sorted(metrics) if key not in header]
            rows.append({"epoch": epochs - 1, **metrics})
        if not header:
            return
        out = io.StringIO()
        writer = csv.DictWriter(out, header, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(self.path, out.getvalue())

    def rows(self) -> tuple[list[str], list[dict]]:
        """The header and rows (empty when there is no file)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return [], []
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"{self.path}: cannot be read ({error}); restore it from a backup, or delete it "
                            "(the curves of the epochs so far are then lost)") from None
        reader = csv.DictReader(io.StringIO(text))
        return list(reader.fieldnames or []), list(reader)


def _epoch_index(row: dict) -> int | None:
    try:
        return int(row.get("epoch") or "")
    except ValueError:
        return None
