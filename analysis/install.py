"""Installing a report atomically: every file into a temporary folder beside the report, then
each part swapped in, so that a full disk or a failure halfway leaves the old report whole.

Works on any pyarrow filesystem (a local folder, s3://, gs://); object stores cannot rename a
folder, so there a part moves file by file.
"""

from __future__ import annotations

import errno
import logging
import uuid
from typing import Any

import pyarrow.fs as pafs

from trainers.paths import store_path

log = logging.getLogger(__name__)


def stage(fs: Any, base: str) -> str:
    """Create the temporary folder `<base>/.report-new-<id>` and return it; refuses a folder
    we may not write, or a report part of the wrong kind, before minutes of fitting."""
    new = store_path(base, f".report-new-{uuid.uuid4().hex[:12]}")
    try:
        fs.create_dir(new, recursive=True)
    except OSError as err:
        raise ReportNotWritten(_unwritable(base, err)) from None
    _check_parts(fs, base, new)
    return new


REPORT_PARTS = ("report.md", "report.html", "tables", "figures")  # what a report replaces


class ReportNotWritten(OSError):
    """The report could not be written; the old one, if any, is untouched. One line."""


def _unwritable(base: str, err: OSError) -> str:
    full = getattr(err, "errno", None) == errno.ENOSPC or "space" in str(err).lower()
    cause = "the disk is full: free space" if full else "a store you may only read"
    return (
        f"cannot write the report into {base} ({_first(err)}); {cause}, "
        "or write it elsewhere with --out DIR"
    )


def install_report(fs: Any, base: str, files: dict[str, bytes], new: str | None = None) -> None:
    """Write `files` (paths relative to `base`, under REPORT_PARTS) into `<base>/.report-new-<id>`,
    then swap each part in: the old part moves into `<base>/.report-old-<id>`, the new one takes
    its place, and the old is deleted last. Any failure before the swap leaves the old report
    whole; a failure during it moves the parts already swapped back."""
    tag = uuid.uuid4().hex[:12]
    new = new or store_path(base, f".report-new-{tag}")
    old = store_path(base, f".report-old-{tag}")
    _check_parts(fs, base, new)
    try:
        for name, data in files.items():
            path = store_path(new, name)
            fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
            with fs.open_output_stream(path) as stream:
                stream.write(data)
    except OSError as err:
        remove(fs, new)
        raise ReportNotWritten(f"{_unwritable(base, err)}; the old report is untouched") from None
    swapped: list[str] = []
    try:
        for part in REPORT_PARTS:  # a part the new report lacks goes too: nothing stale stays
            swapped.append(part)
            if fs.get_file_info(store_path(base, part)).type != pafs.FileType.NotFound:
                fs.create_dir(old, recursive=True)
                _move(fs, store_path(base, part), store_path(old, part))
            if fs.get_file_info(store_path(new, part)).type != pafs.FileType.NotFound:
                _move(fs, store_path(new, part), store_path(base, part))
    except OSError as err:
        restored = True
        for part in reversed(swapped):  # put the old report back as it was
            try:
                moved_in = fs.get_file_info(store_path(new, part)).type == pafs.FileType.NotFound
                had_old = fs.get_file_info(store_path(old, part)).type != pafs.FileType.NotFound
                if moved_in or had_old:
                    remove(fs, store_path(base, part))
                if had_old:
                    _move(fs, store_path(old, part), store_path(base, part))
            except OSError as undo:
                restored = False  # the old part stays in `old`, named in the log
                log.warning("report: could not restore %s from %s: %s", part, old, _first(undo))
        remove(fs, new)
        if restored:
            remove(fs, old)
        raise ReportNotWritten(
            f"cannot swap the new report into {base} ({_first(err)}); the old one was restored"
        ) from None
    remove(fs, new)
    remove(fs, old)


def _check_parts(fs: Any, base: str, new: str) -> None:
    """A folder where a report file belongs (or the reverse): refused before anything changes."""
    for part in REPORT_PARTS:
        kind = fs.get_file_info(store_path(base, part)).type
        wanted = pafs.FileType.Directory if part in ("tables", "figures") else pafs.FileType.File
        if kind not in (pafs.FileType.NotFound, wanted):
            remove(fs, new)
            raise ReportNotWritten(
                f"{base}/{part} is a {'folder' if kind == pafs.FileType.Directory else 'file'};"
                " move it away, or write the report elsewhere with --out DIR"
            )


def _move(fs: Any, source: str, dest: str) -> None:
    """A rename; object stores cannot rename a folder, so there it moves file by file."""
    info = fs.get_file_info(source)
    if info.type == pafs.FileType.File or isinstance(fs, pafs.LocalFileSystem):
        fs.move(source, dest)
        return
    for item in fs.get_file_info(pafs.FileSelector(source, recursive=True)):
        if item.type == pafs.FileType.File:
            fs.move(item.path, dest + item.path[len(source) :])
    fs.delete_dir(source)


def remove(fs: Any, path: str) -> None:
    try:
        kind = fs.get_file_info(path).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif kind == pafs.FileType.File:
            fs.delete_file(path)
    except OSError as err:  # leftover temporary folders are named, not fatal
        log.warning("report: could not remove %s: %s", path, _first(err))


def _first(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:200]
