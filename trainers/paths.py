"""Names and paths: the one rule for a name from a config that reaches a path, the one function
that builds a path inside a store root, and the storage URIs itx accepts (opened by
`sweep.schema.open_store`) and the machine cache.

Pure Python, so configs, the sweep and the analysis all use it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

# A run, intermediate, mixture, target or source name becomes one folder or file name: letters,
# digits, `_ . -`, starting with a letter or digit (so never `.`, `..` or a hidden file), at most
# 64 characters. Trial keys (hex, with `-stage-0` / `-null` parts) obey the same rule.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NAME = re.compile(NAME_PATTERN)
# one path segment built from names (`<key>.parquet`, `v00000200`, `.tmp-<uuid>`)
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")

STORAGE_SCHEMES = ("file", "s3", "gs", "gcs")
ALLOWED_STORAGE = "a folder, file:///path, s3://bucket/path or gs://bucket/path"
# Some calls ignore sweep.schema's GCS retry limit (create_dir offline: minutes): the first
# access of a command waits this long at most, then the command says the storage does not answer.
FIRST_ANSWER_SECONDS = 30.0

T = TypeVar("T")


class NoAnswer(OSError):
    """The storage did not answer in time; the message is one line."""


def within(seconds: float, what: str, call: Callable[[], T]) -> T:
    """`call()`, or NoAnswer if it has not returned after `seconds` (it then runs on in a daemon
    thread that the process abandons at exit: pyarrow offers no way to cancel a call)."""
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    worker = threading.Thread(target=target, daemon=True, name="itx-storage-probe")
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise NoAnswer(f"{what}: no answer within {seconds:.0f} s (offline, or a wrong endpoint?)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def excerpt(value: object, limit: int = 60) -> str:
    """`repr` of a value, cut to `limit` characters: an error never echoes a huge input."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]} ({len(text)} chars)"


def check_name(name: object) -> str:
    """`name` when it may become one folder or file name under a store root, else ValueError."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ValueError(
            f"{excerpt(name)} is not a valid name: letters, digits and _ . - only, starting with"
            " a letter or digit, at most 64 characters, no '..' (it names a folder in the store)"
        )
    return name


def store_path(root: str, *parts: str) -> str:
    """`root/part/...`, refusing any part that could leave `root` (absolute, `..`, `.`, empty,
    separators inside a segment other than `/`, control characters): every store path is built
    here. A part may hold several `/`-separated segments ("task_embeddings/xnli.json")."""
    segments = []
    for part in parts:
        for segment in str(part).split("/"):
            if segment in ("", ".", "..") or not _SEGMENT.match(segment):
                raise ValueError(
                    f"path {excerpt('/'.join(map(str, parts)))} would leave the store root "
                    f"{excerpt(root)}: segment {excerpt(segment)} is not a plain name"
                )
            segments.append(segment)
    if not segments:
        return root
    return f"{root.rstrip('/')}/{'/'.join(segments)}"


def check_storage(uri: object) -> str:
    """`uri` when itx can use it as a storage root, else ValueError (one line, what is allowed).

    Credentials in a URI (s3://KEY:SECRET@bucket) are refused: the URI is written to the manifest.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise ValueError(f"storage must be {ALLOWED_STORAGE} (got {excerpt(uri)})")
    if len(uri) > 1024:
        raise ValueError(f"storage is {len(uri)} characters; at most 1024")
    bad = next((c for c in uri if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ValueError(f"storage {excerpt(uri)} contains the control character {bad!r}")
    if "://" not in uri:
        if ":" in uri.split("/", 1)[0] and not uri.startswith(("./", "/")):
            raise ValueError(f"storage {excerpt(uri)} looks like a URI without '//'; {_allowed()}")
        return uri
    scheme, rest = uri.split("://", 1)
    if scheme.lower() not in STORAGE_SCHEMES:
        raise ValueError(f"storage {excerpt(uri)}: unsupported scheme {scheme!r}; {_allowed()}")
    if scheme.lower() == "file":
        if not rest.startswith("/"):
            raise ValueError(f"storage {excerpt(uri)}: file:// needs an absolute path (file:///)")
        return uri
    bucket = rest.split("/", 1)[0].split("?", 1)[0]
    if "@" in bucket:
        raise ValueError(
            f"storage {scheme}://...: credentials in the URI would be written to the manifest; "
            "set them in the environment (AWS_ACCESS_KEY_ID..., GOOGLE_APPLICATION_CREDENTIALS)"
        )
    if not bucket:
        raise ValueError(f"storage {excerpt(uri)}: no bucket; write {scheme}://BUCKET/path")
    return uri


def _allowed() -> str:
    return f"allowed: {ALLOWED_STORAGE}"


def cache_root() -> Path:
    """Machine-wide cache for pretrained synthetic encoders (`ITX_CACHE`, else ~/.cache/itx)."""
    return Path(os.environ.get("ITX_CACHE", Path.home() / ".cache" / "itx")).expanduser()
