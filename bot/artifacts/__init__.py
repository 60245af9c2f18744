"""Where dumps live: a local folder or `s3://bucket/prefix`, behind one small Protocol.

Every dump (restore points, pre-rollback dumps) is put here with its size and sha256, and every dump
read back is checked against both before anything uses it, so a restore point taken on one machine (an
ephemeral CI runner) can be restored safely on another (the bot), and a corrupted object is refused.
"""

from __future__ import annotations

from bot.artifacts.base import (
    CHUNK_SIZE,
    ArtifactStore,
    StoredArtifact,
    fetch_artifact,
    fetched,
    hash_file,
    is_s3,
    join_location,
    open_artifact_store,
)

__all__ = [
    "CHUNK_SIZE",
    "ArtifactStore",
    "StoredArtifact",
    "fetch_artifact",
    "fetched",
    "hash_file",
    "is_s3",
    "join_location",
    "open_artifact_store",
]
