"""Where exports go: a local folder (``file:///…``) or S3 (``s3://bucket/prefix``), through
pyarrow's filesystems (its S3 client is the AWS C++ SDK, built into the pyarrow wheel we already
depend on for Parquet — no second S3 library).

Every file appears whole or not at all: locally it is written under a temporary name and renamed
(atomic on one filesystem); on S3 an object exists only once its upload completed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from connectors import ConnectorError


class ObjectStoreError(ConnectorError):
    """A destination URI is malformed, or the store refused a read or a write."""


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: an endpoint (MinIO, SeaweedFS; ``None`` = AWS) and credentials
    (``None`` = the AWS default chain: environment, profile, instance role)."""

    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str = "us-east-1"


class ObjectStore:
    """Files under one root URI.

    Args:
        uri: ``file:///abs/dir``, ``s3://bucket/prefix`` or a plain local path.
        s3: How to reach S3 for ``s3://`` URIs.
    """

    def __init__(self, uri: str, s3: S3Options | None = None) -> None:
        from pyarrow import fs

        self.uri = uri.rstrip("/")
        parts = urlsplit(uri)
        self.is_s3 = parts.scheme == "s3"
        if self.is_s3:
            if not parts.netloc:
                raise ObjectStoreError(f"{uri!r}: an S3 URI is s3://bucket[/prefix]")
            self.bucket = parts.netloc
            self.root = f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
            self.fs: Any = _s3(s3 or S3Options())
        elif parts.scheme in ("file", ""):
            path = parts.path if parts.scheme == "file" else uri
            if parts.scheme == "file" and parts.netloc not in ("", "localhost"):
                raise ObjectStoreError(f"{uri!r}: a file URI is file:///absolute/path")
            self.root = os.path.abspath(path).rstrip("/")
            self.fs = fs.LocalFileSystem()
        else:
            raise ObjectStoreError(f"{uri!r}: the destination must be file:///… or s3://bucket/prefix")

    def path(self, name: str) -> str:
        """The store path of ``name`` (relative to the root)."""
        return f"{self.root}/{name}" if name else self.root

    def prepare(self) -> None:
        """Create the root folder, or the bucket when it does not exist yet."""
        try:
            self.fs.create_dir(self.bucket if self.is_s3 else self.root, recursive=True)
        except OSError as exc:
            raise ObjectStoreError(f"cannot create {self.uri}: {exc}") from exc

    def write(self, name: str, fill: Callable[[Any], None]) -> None:
        """Write ``name`` whole: ``fill(stream)`` writes the bytes; the file appears only once
        ``fill`` returned (a crash leaves no partial file under ``name``)."""
        final = self.path(name)
        try:
            if self.is_s3:
                with self.fs.open_output_stream(final) as out:
                    fill(out)
                return
            self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
            tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
            try:
                with self.fs.open_output_stream(tmp) as out:
                    fill(out)
                self.fs.move(tmp, final)
            finally:
                if self.exists_path(tmp):
                    self.fs.delete_file(tmp)
        except OSError as exc:
            raise ObjectStoreError(f"cannot write {self.uri}/{name}: {exc}") from exc

    def exists_path(self, path: str) -> bool:
        from pyarrow import fs

        return bool(self.fs.get_file_info(path).type != fs.FileType.NotFound)

    def exists(self, name: str) -> bool:
        return self.exists_path(self.path(name))

    def list(self, prefix: str = "") -> list[str]:
        """Names of the files under ``prefix`` (relative to the root), recursively, sorted;
        temporary files of unfinished writes left out."""
        from pyarrow import fs

        base = self.path(prefix.rstrip("/"))
        try:
            infos = self.fs.get_file_info(fs.FileSelector(base, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise ObjectStoreError(f"cannot list {self.uri}/{prefix}: {exc}") from exc
        names = [i.path[len(self.root) + 1:] for i in infos if i.type == fs.FileType.File]
        return sorted(n for n in names if ".tmp-" not in n.rsplit("/", 1)[-1])

    def read(self, name: str) -> bytes:
        with self.fs.open_input_stream(self.path(name)) as f:
            return bytes(f.read())


def _s3(options: S3Options) -> Any:
    from pyarrow import fs

    kwargs: dict[str, Any] = {"region": options.region, "allow_bucket_creation": True}
    if options.endpoint_url:
        parts = urlsplit(options.endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ObjectStoreError(f"S3 endpoint {options.endpoint_url!r}: expected http(s)://host:port")
        kwargs.update(endpoint_override=parts.netloc, scheme=parts.scheme,
                      force_virtual_addressing=False)
    if options.access_key_id:
        kwargs.update(access_key=options.access_key_id, secret_key=options.secret_access_key or "")
    return fs.S3FileSystem(**kwargs)


__all__ = ["ObjectStore", "ObjectStoreError", "S3Options"]
