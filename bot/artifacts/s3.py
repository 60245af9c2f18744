"""Artifacts in S3 (or any S3-compatible store), through boto3's standard configuration only.

Endpoint (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL), profile, credentials and region are whatever boto3
finds by itself: nothing here overrides them. boto3 is imported on first use, so a CLI whose backups are
in a folder never pays for it.

Uploads use boto3's managed transfer (multipart, a bounded number of parts in flight) and are checked
with head_object before they count. Downloads stream one ranged GET at a time so the sha256 is computed
as the bytes arrive; a broken stream resumes from where it stopped, pinned to the same object (If-Match).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bot.artifacts.base import CHUNK_SIZE, StoredArtifact, check_digest, hash_file, is_s3
from bot.errors import ArtifactError

PART_SIZE = 16 * 1024 * 1024  # multipart part size: memory in flight is about PART_SIZE × CONCURRENCY
CONCURRENCY = 4
STREAM_ATTEMPTS = 3  # a download whose stream breaks resumes (ranged GET) this many times in all


def split_s3(location: str) -> tuple[str, str]:
    """s3://bucket/key → (bucket, key)."""
    bucket, _, key = location.removeprefix("s3://").partition("/")
    return bucket, key


class S3Artifacts:
    def __init__(self, location: str) -> None:
        self.bucket, prefix = split_s3(location.rstrip("/"))
        self.prefix = prefix.strip("/")
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def location_for(self, name: str) -> str:
        return f"s3://{self.bucket}/{self._key(name)}"

    def describe(self) -> str:
        return self.location

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3  # lazily: only a bot whose backups are in S3 loads boto3

                # No endpoint, region or credentials passed: boto3 reads AWS_ENDPOINT_URL_S3 /
                # AWS_ENDPOINT_URL, AWS_PROFILE, AWS_REGION and the credential chain exactly as it would.
                self._client = boto3.session.Session().client("s3")
            return self._client

    def put(self, local_file: Path, name: str) -> StoredArtifact:
        from boto3.s3.transfer import TransferConfig

        sha256, size = hash_file(local_file)
        key = self._free_key(self._key(name))
        where = f"s3://{self.bucket}/{key}"
        config = TransferConfig(
            multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=CONCURRENCY
        )
        with _aws_errors(f"upload {local_file.name} to {where}"):
            self.client().upload_file(
                str(local_file),
                self.bucket,
                key,
                ExtraArgs={"Metadata": {"sha256": sha256}, "ContentType": "application/octet-stream"},
                Config=config,
            )
            head = self.client().head_object(Bucket=self.bucket, Key=key)
        landed, recorded = int(head.get("ContentLength", -1)), head.get("Metadata", {}).get("sha256")
        if landed != size or recorded != sha256:
            raise ArtifactError(
                f"the upload to {where} did not land intact: {landed} bytes there, {size} sent",
                hint="the pre-rollback dump is not considered taken; retry the step",
            )
        return StoredArtifact(location=where, size=size, sha256=sha256)

    def fetch(self, location: str, expected_sha256: str, expected_size: int | None, dest_dir: Path) -> Path:
        if not is_s3(location):  # a restore point recorded when backups were in a folder
            from bot.artifacts.local import LocalArtifacts

            return LocalArtifacts(Path(location).parent).fetch(location, expected_sha256, expected_size, dest_dir)
        bucket, key = split_s3(location)
        dest_dir.mkdir(parents=True, exist_ok=True)
        # One folder per recorded sha256, the file keeping its own name (people read it in the step's output).
        final = dest_dir / expected_sha256[:16] / key.rsplit("/", 1)[-1]
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.is_file():
            # Downloaded and checked earlier in this run (the safety check): hash it again, locally.
            sha256, size = hash_file(final)
            if sha256 == expected_sha256 and (expected_size is None or size == expected_size):
                return final
            final.unlink()
        partial = final.parent / f".{final.name}.{secrets.token_hex(4)}.partial"
        try:
            sha256, size = self._download(bucket, key, partial, location)
            check_digest(
                location, expected_sha256=expected_sha256, expected_size=expected_size, sha256=sha256, size=size
            )
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
            if not final.exists():
                with suppress(OSError):
                    final.parent.rmdir()
        return final

    def check_writable(self) -> str:
        # A probe object written then deleted, rather than head_bucket: head_bucket only proves the bucket
        # exists and can be listed, while the dump needs s3:PutObject under this prefix. The delete is
        # best effort: a bucket that forbids deletes (object lock, a backup policy) is still writable.
        key = self._key(f".rollback-bot-write-test/{socket.gethostname()}-{secrets.token_hex(4)}")
        with _aws_errors(f"write to {self.location}"):
            self.client().put_object(Bucket=self.bucket, Key=key, Body=b"ok")
        try:
            self.client().delete_object(Bucket=self.bucket, Key=key)
        except Exception:
            return f"backups writable: {self.location} (the probe object {key} could not be deleted)"
        return f"backups writable: {self.location}"

    def delete(self, location: str) -> bool:
        bucket, key = split_s3(location)
        inside = bucket == self.bucket and (not self.prefix or key.startswith(self.prefix + "/"))
        if not inside or not key:
            raise ArtifactError(f"{location} is not in the configured backups {self.location}: left alone")
        if not self._exists(key):
            return False
        with _aws_errors(f"delete {location}"):
            self.client().delete_object(Bucket=bucket, Key=key)
        return True

    def _free_key(self, key: str) -> str:
        """`key`, or key-2, key-3 … if taken: a dump is never overwritten."""
        stem, dot, suffix = key.rpartition(".")
        if not dot or "/" in suffix:
            stem, dot, suffix = key, "", ""
        for counter in range(1, 1000):
            candidate = key if counter == 1 else f"{stem}-{counter}{dot}{suffix}"
            if not self._exists(candidate):
                return candidate
        raise ArtifactError(f"no free name for s3://{self.bucket}/{key}")

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client().head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise _as_artifact_error(error, f"read s3://{self.bucket}/{key}") from None
        except Exception as error:
            raise _as_artifact_error(error, f"read s3://{self.bucket}/{key}") from None

    def _download(self, bucket: str, key: str, partial: Path, location: str) -> tuple[str, int]:
        from botocore.exceptions import ConnectionClosedError, ReadTimeoutError, ResponseStreamingError

        digest, size, etag = hashlib.sha256(), 0, None
        with partial.open("wb") as out:
            for attempt in range(1, STREAM_ATTEMPTS + 1):
                args: dict[str, Any] = {"Bucket": bucket, "Key": key}
                if etag:  # resume exactly where the stream broke, and only from the same object
                    args.update(Range=f"bytes={size}-", IfMatch=etag)
                with _aws_errors(f"download {location}"):
                    answer = self.client().get_object(**args)
                etag = etag or answer.get("ETag")
                try:
                    for chunk in answer["Body"].iter_chunks(CHUNK_SIZE):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                    return digest.hexdigest(), size
                except (ResponseStreamingError, ReadTimeoutError, ConnectionClosedError) as error:
                    if attempt == STREAM_ATTEMPTS or etag is None:
                        raise _as_artifact_error(error, f"download {location}") from None
        raise AssertionError("unreachable")


@contextmanager
def _aws_errors(doing: str) -> Iterator[None]:
    """Turn boto3's exceptions into an ArtifactError saying what was being done."""
    try:
        yield
    except ArtifactError:
        raise
    except Exception as error:
        raise _as_artifact_error(error, doing) from None


def _as_artifact_error(error: Exception, doing: str) -> ArtifactError:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = response["Error"].get("Code", "")
        message = response["Error"].get("Message", "")
        hint = {
            "NoSuchBucket": "check [bot] backup_dir names an existing bucket",
            "NoSuchKey": "the dump is gone from the bucket; restore from another restore point",
            "AccessDenied": "the bot's AWS identity needs s3:GetObject and s3:PutObject on the bucket/prefix",
            "403": "the bot's AWS identity needs s3:GetObject and s3:PutObject on the bucket/prefix",
        }.get(code, "")
        return ArtifactError(f"S3 refused to {doing}: {code} {message}".rstrip(), hint=hint)
    name = type(error).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"):
        hint = "set AWS_PROFILE or AWS credentials as boto3 reads them"
    elif name in ("EndpointConnectionError", "ConnectTimeoutError"):
        hint = "check AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and the network"
    else:
        hint = ""
    return ArtifactError(f"cannot {doing}: {error}", hint=hint)
