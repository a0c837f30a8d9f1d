"""Small file helpers shared by training checkpoints and the converters."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_of_file(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in 1 MiB blocks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
