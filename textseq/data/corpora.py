"""Public corpora that recipes use: where they live, their checksums, and `textseq data fetch`.

Files are kept under the data directory (`$TEXTSEQ_DATA`, else `~/.cache/textseq`), in the same
layout as their origin, so a recipe names them by a relative path such as
`multi30k/tok/train.lc.norm.tok`. Each file's sha256 is checked after download and after a copy
from a local mirror (`--from DIR`).

>>> fetch("multi30k", mirror="../shared/data/multi30k")  # doctest: +SKIP
[PosixPath('/home/me/.cache/textseq/multi30k/raw/train.de.gz'), ...]
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from textseq.errors import UserError


@dataclass(frozen=True)
class Download:
    """A public corpus `textseq data fetch NAME` downloads (or copies from a local mirror), each file
    checked by its SHA-256."""

    name: str
    url: str  # each file's address is url + its relative path
    files: dict[str, str]  # relative path -> sha256

    def path(self, relative: str, root: Path | None = None) -> Path:
        return (root or data_dir()) / self.name / relative


CORPORA = {corpus.name: corpus for corpus in [
    Download("multi30k", "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/", {
        "raw/train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
        "raw/train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
        "raw/val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
        "raw/val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
        "raw/test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
        "raw/test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
        "tok/train.lc.norm.tok.de": "cb5a23529b65ec2061f1dc446192a9c37382b63cc75f81a0be59d34894b3a505",
        "tok/train.lc.norm.tok.en": "08925f8e0572bcd5a006702fc5fe20e2d77c6917d4eebd576fc20de6693c2119",
        "tok/val.lc.norm.tok.de": "97232bd273eceb7207f689527386a97e4be2616b18ada47576bdaf96c8ae1f00",
        "tok/val.lc.norm.tok.en": "46573ce391ae227f1c72f873392436a20ef18e0a6d518098cfbd70b77c8572ec",
        "tok/test_2016_flickr.lc.norm.tok.de": "c6a33d39d48f9f510de147651316cd9d918e09ad0219df734a2f16b6baccacc4",
        "tok/test_2016_flickr.lc.norm.tok.en": "5b7f32627cf99eced828311b955dae9800bb52bc8b91cf8b6526829e605b29d2",
    }),
    Download("tinyshakespeare", "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/", {
        "input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
    }),
]}


def data_dir() -> Path:
    """Where corpora are kept: `$TEXTSEQ_DATA`, else `~/.cache/textseq`."""
    return Path(os.environ.get("TEXTSEQ_DATA") or Path.home() / ".cache" / "textseq").expanduser()


def fetch_hint(name: str) -> str:
    return (f"run `textseq data fetch {name}` (downloads it), or `textseq data fetch {name} --from DIR` "
            "with a local copy, or set data.dir to a directory that holds it")


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, mirror: str | Path | None = None, root: Path | None = None, progress=None) -> list[Path]:
    """Downloads (or copies from `mirror`) every file of corpus `name` and checks its sha256.

    Files already present with the right checksum are kept. `progress(relative_path)` is called
    before each file. Returns the paths of all the corpus' files.
    """
    if name not in CORPORA:
        raise UserError(f"no corpus named {name!r}; known: {', '.join(sorted(CORPORA))}")
    corpus = CORPORA[name]
    if mirror is not None and not Path(mirror).is_dir():
        raise UserError(f"--from {mirror}: not a directory; give the folder that holds "
                        f"{next(iter(corpus.files))} and the corpus' other files")
    paths = []
    for relative, expected in corpus.files.items():
        target = corpus.path(relative, root)
        paths.append(target)
        if target.exists() and sha256(target) == expected:
            continue
        if progress:
            progress(relative)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".part-", delete=False) as part:
                tmp = Path(part.name)
        except OSError as error:
            raise UserError(f"{target.parent}: cannot be written ({error.strerror or error}); set TEXTSEQ_DATA to a "
                            "directory you can write to") from None
        try:
            if mirror is not None:
                origin = Path(mirror) / relative
                if not origin.is_file():
                    raise UserError(f"--from {mirror}: {origin} is missing; the mirror needs the layout of "
                                    f"{corpus.url} ({', '.join(corpus.files)})")
                shutil.copyfile(origin, tmp)
            else:
                origin = corpus.url + relative
                try:
                    with urllib.request.urlopen(origin, timeout=60) as response, open(tmp, "wb") as out:
                        shutil.copyfileobj(response, out)
                except OSError as error:
                    raise UserError(f"{origin}: could not download ({error}); without a network, "
                                    f"`textseq data fetch {name} --from DIR` copies a local mirror") from None
            if (actual := sha256(tmp)) != expected:
                raise UserError(f"{origin}: sha256 is {actual}, expected {expected}; the file differs from the "
                                "published corpus (truncated download or another version); nothing was kept")
            tmp.chmod(0o666 & ~current_umask())  # as any file the user writes (the temporary file was 0600)
            tmp.replace(target)
        except OSError as error:
            raise UserError(f"{target}: cannot be written ({error.strerror or error}); free some room, or set "
                            "TEXTSEQ_DATA to another directory") from None
        finally:
            tmp.unlink(missing_ok=True)
    return paths
