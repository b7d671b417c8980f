"""The report as a document: a list of blocks (headings, paragraphs, tables, images, lists, lines saying what is
missing) that the sections (sections/) write into and render.py writes out as Markdown and as HTML. Every number a
section prints goes through the results' Sources (show)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .sources import Ref, Sources

MISSING = "not measured"


@dataclasses.dataclass
class Block:
    kind: str  # heading | para | table | image | missing | list
    text: str = ""
    level: int = 2
    header: list[str] = dataclasses.field(default_factory=list)
    rows: list[list[str]] = dataclasses.field(default_factory=list)
    items: list[str] = dataclasses.field(default_factory=list)


class Report:
    """The report being built: the results (s), where its plots go (out), its blocks and the images they show."""

    def __init__(self, sources: Sources, out: Path):
        self.s, self.out = sources, out
        self.blocks: list[Block] = []
        self.images: list[str] = []
        self.strategies = sources.strategies()

    # -- blocks --------------------------------------------------------------------------------------------------------

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(Block("heading", text, level=level))

    def para(self, text: str) -> None:
        self.blocks.append(Block("para", text))

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        self.blocks.append(Block("table", header=header, rows=rows))

    def listing(self, items: list[str]) -> None:
        self.blocks.append(Block("list", items=items))

    def missing(self, what: str) -> None:
        self.blocks.append(Block("missing", f"Not shown: {what}."))

    def image(self, path: Path, alt: str) -> None:
        self.images.append(path.name)
        self.blocks.append(Block("image", path.name, items=[alt]))

    def show(self, ref: Ref | None, **kwargs) -> str:
        return MISSING if ref is None else self.s.show(ref, **kwargs)
