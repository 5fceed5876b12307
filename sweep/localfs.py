"""A local folder behind pyarrow's `FileSystemHandler`: the object-store code path of the store
(`PyFileSystem` is not a `LocalFileSystem`), with one hook on every file written.

Tests and benchmarks subclass it to fail, count or throttle uploads; nothing in a sweep uses it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs


class WrappedStream:
    """A Python file object around a pyarrow output stream, for `pa.PythonFile(..., mode="w")`
    in `wrap_output`: subclasses change `write`; flush and close go to the stream."""

    def __init__(self, inner: pa.NativeFile) -> None:
        self.inner, self.closed = inner, False

    def write(self, data: bytes) -> int:
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        self.closed = True
        self.inner.close()


class LocalHandler(pafs.FileSystemHandler):
    """Delegates everything to a local filesystem; `wrap_output` sees each output stream."""

    def __init__(self) -> None:
        self.fs = pafs.LocalFileSystem()

    def wrap_output(self, path: str, stream: pa.NativeFile) -> pa.NativeFile:
        return stream

    def open_output_stream(self, path: str, metadata: object) -> pa.NativeFile:
        return self.wrap_output(path, self.fs.open_output_stream(path))

    def get_type_name(self) -> str:
        return f"local-{type(self).__name__.lower()}"

    def normalize_path(self, path: str) -> str:
        return self.fs.normalize_path(path)

    def equals(self, other: object) -> bool:
        return self is other

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        return self.fs.get_file_info(selector)

    def create_dir(self, path: str, recursive: bool) -> None:
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("refused: deleting the filesystem's root")

    def delete_file(self, path: str) -> None:
        self.fs.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.fs.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.fs.copy_file(src, dest)

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self.fs.open_input_stream(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self.fs.open_input_file(path)

    def open_append_stream(self, path: str, metadata: object) -> pa.NativeFile:
        return self.fs.open_append_stream(path)
