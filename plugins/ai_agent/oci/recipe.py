"""A layer blob kept as a recipe instead of bytes: the tar stream's own bytes (headers, padding,
the end-of-archive blocks) inline, and for each big file's content the file it comes from.

An uncompressed layer of a 1 GiB weights file is that file with a few KiB around it. Writing it
out would make the build write, and Pants capture (hash, copy, fsync) into its store, a second
copy of every weights byte it already holds as a source. As a recipe the layer step reads and
hashes the file once and writes a few KiB; whatever needs the blob itself (an archive, an OCI
layout in `dist/`, a push) stitches it from the recipe and the same source file, which Pants
hardlinks into that step's sandbox from its store.

A source is named relative to the directory of the descriptor that holds the recipe, so a step
that has the layer step's output and its inputs, merged at the same root, can follow it.
"""

from __future__ import annotations

import base64
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, List, Mapping, Optional, Tuple

from .errors import OciError

# Files smaller than this stay inline: a recipe is worth it for big files only.
RECIPE_SOURCE_MIN = 1 << 20
_CHUNK = 1 << 20


class RecipeError(OciError):
    """A recipe is malformed or its sources are not what it says."""


@dataclass(frozen=True)
class RecipePart:
    """Bytes kept inline (`data`), or `size` bytes of the file `source`."""

    size: int
    data: Optional[bytes] = None
    source: Optional[str] = None

    def to_json(self, relative_to: Path) -> Mapping[str, Any]:
        if self.data is not None:
            return {"data": base64.b64encode(self.data).decode("ascii")}
        assert self.source is not None
        return {"source": os.path.relpath(self.source, relative_to), "size": self.size}


@dataclass(frozen=True)
class BlobRecipe:
    """The parts a blob is made of, in order."""

    parts: Tuple[RecipePart, ...]

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def sources(self) -> Tuple[str, ...]:
        return tuple(part.source for part in self.parts if part.source is not None)

    def to_json(self, relative_to: Path) -> List[Mapping[str, Any]]:
        """The parts as a descriptor holds them, sources relative to `relative_to`."""
        return [part.to_json(relative_to) for part in self.parts]

    @classmethod
    def from_json(cls, document: Any, base_dir: Path, where: str) -> BlobRecipe:
        if not isinstance(document, list):
            raise RecipeError(f"{where}: a recipe is a list of parts, got {document!r}")
        parts = []
        for number, raw in enumerate(document):
            if isinstance(raw, dict) and set(raw) == {"data"} and isinstance(raw["data"], str):
                data = base64.b64decode(raw["data"].encode("ascii"), validate=True)
                parts.append(RecipePart(len(data), data=data))
            elif (
                isinstance(raw, dict)
                and set(raw) == {"source", "size"}
                and isinstance(raw["source"], str)
                and isinstance(raw["size"], int)
                and raw["size"] >= 0
            ):
                parts.append(RecipePart(raw["size"], source=str(base_dir / raw["source"])))
            else:
                raise RecipeError(
                    f"{where}: part {number} must be {{'data': base64}} or"
                    f" {{'source': path, 'size': bytes}}, got {raw!r}"
                )
        return cls(tuple(parts))

    def check_sources(self, what: str) -> None:
        """Refuse, before a byte is written, a source that is missing or of another size."""
        for part in self.parts:
            if part.source is None:
                continue
            try:
                size = os.stat(part.source).st_size
            except OSError as error:
                raise RecipeError(
                    f"{what}: cannot read {part.source}, which its recipe names:"
                    f" {error.strerror}"
                ) from None
            if size != part.size:
                raise RecipeError(
                    f"{what}: {part.source} holds {size} bytes, its recipe says {part.size}"
                )

    def open(self, offset: int = 0) -> BinaryIO:
        """The blob's bytes from `offset`, read part by part (a source opened when reached)."""
        return io.BufferedReader(_RecipeReader(self, offset), _CHUNK)


class _RecipeReader(io.RawIOBase):
    def __init__(self, recipe: BlobRecipe, offset: int) -> None:
        self._parts = list(recipe.parts)
        self._index = 0
        self._within = offset
        self._file: Optional[io.FileIO] = None
        # Skip whole parts before `offset`.
        while self._index < len(self._parts) and self._within >= self._parts[self._index].size:
            self._within -= self._parts[self._index].size
            self._index += 1

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while self._index < len(self._parts):
            part = self._parts[self._index]
            left = part.size - self._within
            if left == 0:
                self._next_part()
                continue
            wanted = min(left, len(view))
            if part.data is not None:
                view[:wanted] = part.data[self._within : self._within + wanted]
                got = wanted
            else:
                got = self._source(part).readinto(view[:wanted]) or 0
                if not got:
                    raise RecipeError(f"{part.source} ended before its {part.size} bytes")
            self._within += got
            return got
        return 0

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        super().close()

    def _source(self, part: RecipePart) -> io.FileIO:
        if self._file is None:
            assert part.source is not None
            self._file = io.FileIO(part.source, "rb")
            self._file.seek(self._within)
        return self._file

    def _next_part(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._index += 1
        self._within = 0
