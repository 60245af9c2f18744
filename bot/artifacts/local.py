"""Artifacts in a local (or mounted) folder: today's backup_dir, made atomic, durable and checked."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from bot.artifacts.base import StoredArtifact, check_digest, copy_hashing, fetch_artifact, hash_file, is_s3
from bot.errors import ArtifactError


class LocalArtifacts:
    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @property
    def location(self) -> str:
        return str(self.folder)

    def location_for(self, name: str) -> str:
        return str(self.folder / name)

    def describe(self) -> str:
        return f"folder {self.folder}"

    def put(self, local_file: Path, name: str) -> StoredArtifact:
        dest = self.folder / name
        partial = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.partial"
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                # Same filesystem (the usual case: work_dir beside backup_dir): a hard link costs no copy.
                os.link(local_file, partial)
                sha256, size = hash_file(partial)
            except OSError:
                with local_file.open("rb") as source, partial.open("wb") as out:
                    sha256, size = copy_hashing(source, out)
            _fsync(partial)
            final = _publish(partial, dest)
            _fsync(dest.parent)
        except OSError as error:
            raise ArtifactError(
                f"cannot store {local_file.name} in {dest.parent}: {error.strerror or error}",
                hint="check the backup folder exists, is writable and has room",
            ) from None
        finally:
            partial.unlink(missing_ok=True)
        return StoredArtifact(location=str(final), size=size, sha256=sha256)

    def fetch(self, location: str, expected_sha256: str, expected_size: int | None, dest_dir: Path) -> Path:
        if is_s3(location):  # recorded by a bot whose backups were in S3
            return fetch_artifact(location, expected_sha256, expected_size, dest_dir)
        path = Path(location)
        try:
            sha256, size = hash_file(path)
        except OSError as error:
            raise ArtifactError(
                f"cannot read {location}: {error.strerror or error}",
                hint="the dump was moved or deleted; restore from another restore point",
            ) from None
        check_digest(location, expected_sha256=expected_sha256, expected_size=expected_size, sha256=sha256, size=size)
        return path

    def check_writable(self) -> str:
        probe = self.folder / f".write-test-{secrets.token_hex(4)}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise ArtifactError(f"cannot write the pre-rollback dump to {self.folder}: {error.strerror}") from None
        return f"backup folder writable: {self.folder}"

    def delete(self, location: str) -> bool:
        path = Path(location)
        if self.folder.resolve() not in path.resolve().parents:
            raise ArtifactError(f"{location} is not in the backup folder {self.folder}: left alone")
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as error:
            raise ArtifactError(f"cannot delete {location}: {error.strerror or error}") from None
        return True


def _publish(partial: Path, dest: Path) -> Path:
    """Give `partial` its final name atomically; a name already taken gets -2, -3 … (never overwritten)."""
    for counter in range(1, 1000):
        candidate = dest if counter == 1 else dest.with_name(f"{dest.stem}-{counter}{dest.suffix}")
        try:
            os.link(partial, candidate)  # fails if the name exists: atomic and never overwrites
            return candidate
        except FileExistsError:
            continue
        except OSError:
            # A filesystem without hard links: rename is still atomic; the check-then-rename race is
            # harmless here because one environment's lock keeps writers of one name apart.
            if candidate.exists():
                continue
            os.rename(partial, candidate)
            return candidate
    raise FileExistsError(f"no free name for {dest}")


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk: a dump is only kept if it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
