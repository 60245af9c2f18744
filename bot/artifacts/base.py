"""The artifact store's Protocol, its record, and what both backends share (chunked hashing, dispatch)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from bot.errors import ArtifactCorrupt

CHUNK_SIZE = 1 << 20  # 1 MiB: memory stays flat whatever the dump's size


@dataclass(frozen=True)
class StoredArtifact:
    location: str  # an absolute path, or s3://bucket/key
    size: int
    sha256: str


class ArtifactStore(Protocol):
    """A place dumps are kept. `name` is relative (e.g. "prod/pre-rollback-202405010310.dump")."""

    @property
    def location(self) -> str:
        """The root: an absolute folder, or s3://bucket/prefix."""
        ...

    def location_for(self, name: str) -> str:
        """Where `name` would be put (for plans; `put` may add -2, -3 … rather than overwrite)."""
        ...

    def put(self, local_file: Path, name: str) -> StoredArtifact:
        """Store a copy of `local_file` as `name` (never overwriting one already there) and verify it landed.

        `local_file` is left in place: the caller deletes its scratch copy.
        """
        ...

    def fetch(self, location: str, expected_sha256: str, expected_size: int | None, dest_dir: Path) -> Path:
        """A local file with exactly the recorded bytes, or ArtifactCorrupt before anything uses it.

        A local artifact is hashed where it is and its own path returned; a remote one is downloaded
        into `dest_dir` (hashed as it streams), and the caller owns that copy (see `fetched`).
        """
        ...

    def check_writable(self) -> str:
        """One line for the safety check saying it can be written; ArtifactError otherwise."""
        ...

    def delete(self, location: str) -> bool:
        """Remove one artifact this store holds (a rehearsal's own dump); False if it was not there.

        Refuses (ArtifactError) a location outside this store: nothing else is ever deleted.
        """
        ...

    def describe(self) -> str: ...


# S3's bucket naming rules (general purpose buckets): 3–63 characters of a-z, 0-9, '.' and '-',
# starting and ending with a letter or digit, not shaped like an IP address.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_IP_LIKE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")


def backup_location_problem(value: str) -> str:
    """What is wrong with a configured backup_dir (a folder or s3://bucket/prefix), or "" if nothing."""
    if value.startswith("s3://"):
        bucket, _, prefix = value.removeprefix("s3://").partition("/")
        problem = _bucket_problem(bucket)
        if problem:
            return f"{value!r}: the bucket name {bucket!r} {problem} (expected s3://bucket/prefix)"
        if "//" in prefix.rstrip("/") or prefix.startswith("/"):
            return f"{value!r}: the prefix has an empty path segment (expected s3://bucket/prefix)"
        return ""
    if "://" in value:
        return f"{value!r} is neither a folder nor an s3://bucket/prefix location"
    return "" if value.strip() else "must be a folder or s3://bucket/prefix"


def _bucket_problem(bucket: str) -> str:
    if not bucket:
        return "is missing"
    if not 3 <= len(bucket) <= 63:
        return "must be 3 to 63 characters long"
    if not _BUCKET.match(bucket):
        return "may only hold lowercase letters, digits, '.' and '-', and must start and end with a letter or digit"
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        return "may not have '..', '.-' or '-.'"
    if _IP_LIKE.match(bucket):
        return "may not be shaped like an IP address"
    if bucket.startswith(("xn--", "sthree-")) or bucket.endswith(("-s3alias", "--ol-s3", "--x-s3")):
        return "uses a prefix or suffix S3 reserves"
    return ""


def is_s3(location: str) -> bool:
    return location.startswith("s3://")


def join_location(root: str | Path, *parts: str) -> str:
    """root/parts… for a folder or an s3:// location alike."""
    if isinstance(root, str) and is_s3(root):
        return "/".join([root.rstrip("/"), *parts])
    return str(Path(root).joinpath(*parts))


def open_artifact_store(location: str) -> ArtifactStore:
    """The store for a configured `backup_dir`; S3 (and boto3) only when the location asks for it."""
    if is_s3(location):
        from bot.artifacts.s3 import S3Artifacts

        return S3Artifacts(location)
    from bot.artifacts.local import LocalArtifacts

    return LocalArtifacts(Path(location))


def fetch_artifact(location: str, expected_sha256: str, expected_size: int | None, dest_dir: Path) -> Path:
    """`ArtifactStore.fetch` for any location, whichever store recorded it (a folder or S3)."""
    root = "s3://" + location.removeprefix("s3://").split("/", 1)[0] if is_s3(location) else str(Path(location).parent)
    return open_artifact_store(root).fetch(location, expected_sha256, expected_size, dest_dir)


@contextmanager
def fetched(store: ArtifactStore, location: str, sha256: str, size: int | None, dest_dir: Path) -> Iterator[Path]:
    """Fetch for one use: a downloaded copy is deleted afterwards; a local artifact is of course kept."""
    path = store.fetch(location, sha256, size, dest_dir)
    try:
        yield path
    finally:
        if str(path) != location:  # a downloaded copy (in its own folder under dest_dir)
            path.unlink(missing_ok=True)
            if path.parent != dest_dir:
                with suppress(OSError):
                    path.parent.rmdir()


def hash_file(path: Path) -> tuple[str, int]:
    """(sha256 hex, size) read in chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def copy_hashing(source: BinaryIO, dest: BinaryIO) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := source.read(CHUNK_SIZE):
        digest.update(chunk)
        dest.write(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def check_digest(location: str, *, expected_sha256: str, expected_size: int | None, sha256: str, size: int) -> None:
    if sha256 != expected_sha256.lower() or (expected_size is not None and size != expected_size):
        raise ArtifactCorrupt(
            location, expected_sha256=expected_sha256, actual_sha256=sha256, expected_size=expected_size, size=size
        )
