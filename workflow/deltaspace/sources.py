"""Reading result tables with the columns a consumer needs, and naming the files behind a row compactly."""
from __future__ import annotations

import os
import re
from itertools import product
from pathlib import Path, PurePosixPath

import pandas as pd


def read_table(path: str | Path, columns: list[str], what: str) -> pd.DataFrame:
    """A CSV (or a benchmark TSV) that must exist and hold `columns`; errors name the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist; run the rule that writes it first")
    try:
        table = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{what} {path} is not a readable table ({err}); delete it and rerun its rule") from err
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} {path} lacks column(s) {missing} (it has {list(table.columns)}); "
                         "it was written by another version: delete it and rerun its rule")
    return table


def compact_paths(paths) -> str:
    """Paths as one brace pattern (results/original/trec/{lora,prefix}/seed42/metrics.json) when that pattern
    names exactly these files, else listed with '; ': a row of an aggregate table names every file behind it."""
    unique = sorted({PurePosixPath(str(p)) for p in paths})
    if len(unique) <= 1:
        return str(unique[0]) if unique else ""
    parts = [p.parts for p in unique]
    if len({len(p) for p in parts}) == 1:
        options = [sorted(set(column), key=_natural) for column in zip(*parts)]
        # A pattern varying in several places also names combinations that are not among the files.
        if len(list(product(*options))) == len(unique):
            return str(PurePosixPath(*[o[0] if len(o) == 1 else _braces(o) for o in options]))
    return "; ".join(map(str, unique))


def _braces(options: list[str]) -> str:
    """seed{2,10} rather than {seed2,seed10}; the shared text never splits a number."""
    prefix = os.path.commonprefix(options).rstrip("0123456789")
    suffix = os.path.commonprefix([o[len(prefix):][::-1] for o in options])[::-1].lstrip("0123456789")
    middles = [o[len(prefix):len(o) - len(suffix)] for o in options]
    return f"{prefix}{{{','.join(middles)}}}{suffix}"


def _natural(text: str):
    """seed2 before seed10 (numbers compare as numbers, and never against text)."""
    return [(0, int(chunk), "") if chunk.isdigit() else (1, 0, chunk) for chunk in re.split(r"(\d+)", text)]
