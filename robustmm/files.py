"""The user's files in and the outputs out: every failure is one RobustMMError line that names the
file and says what to do, never a traceback and never half a file.

Readers (`read_text`, `read_yaml`, `read_json`, `read_parquet`) turn a missing file, a folder
given for a file, a permission problem, bytes that are not UTF-8, bad YAML/JSON and a corrupt
Parquet file into a ConfigError (or the `error` class asked for, e.g. DataError) naming the file.
`what` is how the message names the file ("config file", "search space", "sweep state").

Writers: `writing(path)` turns an OSError while writing `path` into one line (the disk is full,
permission denied, read-only file system), and `new_folders(folder)` creates the missing folders
of a path and removes them again when its body fails, so a refused write leaves the tree as it
was. `robustmm.results.write_atomic` uses both: a file is written to a temp file and renamed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from robustmm.errors import ConfigError, RobustMMError

FULL = (errno.ENOSPC, errno.EDQUOT)
DENIED = (errno.EACCES, errno.EPERM)
OUT_FIX = "choose another --out"
MAX_TEXT = 16 * 2**20
"""The largest text file read whole (configs, search spaces, sweep state)."""
MAX_VALUES = 1_000_000
"""The most values a YAML document may expand to (aliases count once per use)."""


def _q(path: str | Path | None) -> str:
    return repr(str(path))


def read_error(
    path: str | Path, exc: OSError, what: str, *, error: type[RobustMMError] = ConfigError, hint: str = ""
) -> RobustMMError:
    """One line for an OSError met reading `path` (what it is: `what`); `hint` says where a good one is."""
    p = _q(path)
    tail = f"; {hint}" if hint else ""
    if isinstance(exc, FileNotFoundError):
        return error(f"{what} {p} does not exist{tail}")
    if isinstance(exc, IsADirectoryError):
        return error(f"{what} {p} is a folder, not a file; {hint or 'give the file itself'}")
    if isinstance(exc, NotADirectoryError):
        return error(f"{what} {p} does not exist: a part of its path is a file, not a folder{tail}")
    if exc.errno in DENIED:
        return error(f"cannot read {what} {p} (permission denied); make it readable or copy it somewhere readable")
    return error(f"cannot read {what} {p}: {exc.strerror or exc}{tail}")


def write_error(path: str | Path, exc: OSError, fix: str = OUT_FIX) -> ConfigError:
    """One line for an OSError met writing `path`: the disk is full, permission denied, read-only, ..."""
    p = _q(path)
    if exc.errno in FULL:
        folder = _q(Path(path).parent)
        return ConfigError(f"cannot write {p}: the disk holding {folder} is full; free some space or {fix}")
    if exc.errno in DENIED:
        return ConfigError(f"cannot write {p} (permission denied); {fix}")
    if exc.errno == errno.EROFS:
        return ConfigError(f"cannot write {p}: it is on a read-only file system; {fix}")
    if isinstance(exc, IsADirectoryError):
        return ConfigError(f"cannot write {p}: it is a folder; give a file name")
    if isinstance(exc, NotADirectoryError) or exc.errno == errno.EEXIST:
        return ConfigError(f"cannot write {p}: {_q(exc.filename or path)} is a file, not a folder; {fix}")
    if exc.errno == errno.ENAMETOOLONG:
        return ConfigError(f"cannot write {p}: the name is too long; {fix}")
    return ConfigError(f"cannot write {p}: {exc.strerror or exc}; {fix}")


def os_error_line(exc: OSError) -> str:
    """The line the CLI prints for an OSError nobody turned into a RobustMMError: the file and the reason."""
    name = exc.filename
    where = f" {_q(name)}" if name is not None else ""
    if exc.errno in FULL:
        folder = f" holding {_q(Path(name).parent)}" if name is not None else ""
        return f"the disk{folder} is full ({exc.strerror}); free some space or {OUT_FIX}"
    reason = exc.strerror or str(exc) or type(exc).__name__
    second = f" -> {_q(exc.filename2)}" if getattr(exc, "filename2", None) else ""
    return f"{reason}:{where}{second}" if where else reason


@contextlib.contextmanager
def writing(path: str | Path, fix: str = OUT_FIX) -> Iterator[None]:
    """Turn an OSError raised while the body writes `path` into a ConfigError naming `path`."""
    try:
        yield
    except OSError as e:
        raise write_error(path, e, fix) from e


@contextlib.contextmanager
def new_folders(folder: str | Path) -> Iterator[Path]:
    """Create `folder` and its missing parents; if the body raises, remove the ones made here
    that are still empty (deepest first), so a refused write leaves no empty folder behind.
    An OSError (from the mkdir too) goes through: wrap it in `writing` to name the file."""
    folder = Path(folder)
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
    except BaseException:
        for made in missing:  # deepest first
            with contextlib.suppress(OSError):
                made.rmdir()  # only if still empty
        raise


def read_text(
    path: str | Path, what: str, *, error: type[RobustMMError] = ConfigError, hint: str = "", binary_hint: str = ""
) -> str:
    """The UTF-8 text of `path`, or one line naming it (missing, a folder, unreadable, not text)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TEXT + 1)  # a bound: /dev/zero or a data file given by mistake
    except OSError as e:
        raise read_error(path, e, what, error=error, hint=hint) from None
    if len(data) > MAX_TEXT:
        fix = binary_hint or hint or "give a text file"
        raise error(f"{what} {_q(path)} is larger than {MAX_TEXT // 2**20} MiB, not a config; {fix}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        fix = binary_hint or "give a text (UTF-8) file"
        raise error(
            f"{what} {_q(path)} is not a text file (byte {data[e.start]:#04x} at offset {e.start} is not UTF-8); {fix}"
        ) from None


def read_yaml(
    path: str | Path,
    what: str,
    *,
    expect: type | None = dict,
    error: type[RobustMMError] = ConfigError,
    hint: str = "",
    holding: str = "a mapping",
) -> Any:
    """The YAML document in `path`. With `expect=dict` (the default) an empty file is {} and
    anything but a mapping is refused; `holding` says what the mapping should hold."""
    text = read_text(path, what, error=error, hint=hint, binary_hint=hint or "give a YAML file")
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{what} {_q(path)} is not valid YAML{at}: {problem}") from None
    except RecursionError:
        raise error(f"{what} {_q(path)} nests too deeply to be a YAML config") from None
    if _too_large(raw):
        raise error(
            f"{what} {_q(path)} expands to more than {MAX_VALUES} values through its aliases (*name); "
            "write the values out, without aliases"
        )
    if expect is dict:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            got = "a list" if isinstance(raw, list) else f"a {type(raw).__name__} ({str(raw)[:40]!r})"
            raise error(f"{what} {_q(path)} must hold {holding}, got {got}")
    elif expect is not None and not isinstance(raw, expect):
        raise error(f"{what} {_q(path)} must hold a {expect.__name__}, got {type(raw).__name__}")
    return raw


def _too_large(raw: Any) -> bool:
    """Whether `raw`, with every YAML alias expanded, holds more than MAX_VALUES values: nine
    nested aliases of ten make a billion, which a message's repr or a deep copy would walk."""
    count, stack = 0, [raw]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def read_json(
    path: str | Path, what: str, *, expect: type | None = dict, error: type[RobustMMError] = ConfigError, hint: str = ""
) -> Any:
    """The JSON document in `path` (a mapping unless `expect` says otherwise), or one line naming it."""
    text = read_text(path, what, error=error, hint=hint, binary_hint=hint or "give a JSON file")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        tail = f"; {hint}" if hint else ""
        raise error(f"{what} {_q(path)} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}){tail}") from None
    except RecursionError:
        raise error(f"{what} {_q(path)} nests too deeply to be read") from None
    if expect is not None and not isinstance(raw, expect):
        tail = f"; {hint}" if hint else ""
        raise error(f"{what} {_q(path)} must hold a JSON {'object' if expect is dict else expect.__name__}{tail}")
    return raw


def read_parquet(
    path: str | Path, what: str, *, error: type[RobustMMError] = ConfigError, hint: str = "", columns: Any = None
) -> Any:
    """The Parquet table in `path` as a pandas DataFrame, or one line naming it (missing, not
    Parquet, truncated, unreadable)."""
    import pandas as pd
    import pyarrow as pa

    p = Path(path)
    if p.is_dir():  # pyarrow would read a folder as a partitioned dataset
        raise read_error(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path)), what, error=error)
    try:
        return pd.read_parquet(p, engine="pyarrow", columns=columns)
    except FileNotFoundError as e:
        raise read_error(path, e, what, error=error, hint=hint) from None
    except (pa.ArrowException, OSError, ValueError) as e:  # ArrowInvalid: not Parquet / truncated / bad footer
        tail = f"; {hint}" if hint else ""
        if isinstance(e, OSError) and e.errno is not None:
            raise read_error(path, e, what, error=error, hint=hint) from None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        first = first.split("': ", 1)[-1].split(". ")[0][:200]  # pyarrow repeats the path, then explains
        raise error(f"{what} {_q(path)} is not a readable Parquet file ({first}){tail}") from None
