"""Dumps any machine can reach: a local folder or S3 (moto in server mode), checked by size and sha256.

The S3 tests reach moto only through the standard AWS environment variables, as production reaches
AWS; the two-machine incidents (a CI runner takes the restore point, the bot restores it) run the
real command line in separate processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.artifacts import StoredArtifact, fetched, open_artifact_store
from bot.artifacts.s3 import PART_SIZE
from bot.errors import ArtifactCorrupt, ArtifactError
from bot.store import Store
from sandbox.aws import CONFLICTING_ENV, MotoAws
from sandbox.health_server import HealthServer
from sandbox.repo import SandboxRepo, build_sandbox_repo, git
from sandbox.scenario import (
    config_text,
    create_database,
    database_contents,
    deploy_bad_release,
    deploy_good_release,
    drop_databases,
)

BUCKET = "rollback-dumps"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoAws]:
    with MotoAws() as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoAws, monkeypatch: pytest.MonkeyPatch) -> MotoAws:
    moto_server.reset()
    for name in (*CONFLICTING_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.environment().items():
        monkeypatch.setenv(name, value)
    moto_server.create_bucket(BUCKET)
    return moto_server


def a_file(path: Path, size: int) -> tuple[Path, str]:
    """`size` bytes that are not all alike (so a cut or a swap changes the hash), and their sha256."""
    digest = hashlib.sha256()
    block = hashlib.sha512(path.name.encode()).digest() * 2048  # 128 KiB
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        written = 0
        while written < size:
            chunk = block[: size - written]
            out.write(chunk)
            digest.update(chunk)
            written += len(chunk)
    return path, digest.hexdigest()


def test_a_local_folder_keeps_dumps_atomically_and_refuses_a_changed_one(tmp_path: Path) -> None:
    source, sha256 = a_file(tmp_path / "scratch" / "restore-point.dump", 300_000)
    store = open_artifact_store(str(tmp_path / "backups"))
    stored = store.put(source, "prod/restore-point.dump")
    assert stored == StoredArtifact(str(tmp_path / "backups" / "prod" / "restore-point.dump"), 300_000, sha256)
    assert source.is_file()  # the caller deletes its own scratch copy
    assert [p.name for p in (tmp_path / "backups" / "prod").iterdir()] == ["restore-point.dump"]  # no temp left

    again = store.put(source, "prod/restore-point.dump")
    assert again.location.endswith("restore-point-2.dump")  # never overwritten

    assert store.fetch(stored.location, sha256, 300_000, tmp_path / "downloads") == Path(stored.location)
    with fetched(store, stored.location, sha256, 300_000, tmp_path / "downloads") as path:
        assert path == Path(stored.location)
    assert Path(stored.location).is_file()  # fetched() deletes downloads, never the artifact itself

    Path(stored.location).write_bytes(b"PGDMP" + bytes(299_995))
    with pytest.raises(ArtifactCorrupt) as refused:
        store.fetch(stored.location, sha256, 300_000, tmp_path / "downloads")
    assert stored.location in refused.value.message and sha256[:12] in refused.value.message
    assert hashlib.sha256(Path(stored.location).read_bytes()).hexdigest()[:12] in refused.value.message


def test_s3_round_trip_records_size_and_sha256_and_refuses_a_corrupted_object(aws: MotoAws, tmp_path: Path) -> None:
    size = PART_SIZE + 3_000_000  # over the multipart threshold: uploaded in parts
    source, sha256 = a_file(tmp_path / "scratch" / "pre-rollback.dump", size)
    store = open_artifact_store(f"s3://{BUCKET}/team/rollback/")
    assert store.check_writable() == f"backups writable: s3://{BUCKET}/team/rollback"
    assert aws.object_keys(BUCKET) == []  # the probe object is gone

    stored = store.put(source, "prod/pre-rollback.dump")
    assert stored == StoredArtifact(f"s3://{BUCKET}/team/rollback/prod/pre-rollback.dump", size, sha256)
    assert aws.object_metadata(BUCKET, "team/rollback/prod/pre-rollback.dump")["Metadata"] == {"sha256": sha256}
    assert store.put(source, "prod/pre-rollback.dump").location.endswith("prod/pre-rollback-2.dump")

    downloads = tmp_path / "bot" / "downloads"
    path = store.fetch(stored.location, sha256, size, downloads)
    assert path.parent.parent == downloads and path.name == "pre-rollback.dump"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
    with fetched(store, stored.location, sha256, size, downloads) as again:
        assert again == path  # the copy checked by the safety check is checked again, not downloaded again
    assert list(downloads.iterdir()) == []  # and deleted after use

    data = bytearray(aws.object_bytes(BUCKET, "team/rollback/prod/pre-rollback.dump"))
    data[size // 2] ^= 0xFF  # one flipped byte, same size: only the hash can tell
    aws.put_object_bytes(BUCKET, "team/rollback/prod/pre-rollback.dump", bytes(data))
    with pytest.raises(ArtifactCorrupt) as refused:
        store.fetch(stored.location, sha256, size, downloads)
    assert "sha256" in refused.value.message and sha256[:12] in refused.value.message
    assert stored.location in refused.value.message
    assert list(downloads.iterdir()) == []  # nothing corrupt is left where it could be used


def test_a_dump_is_deleted_only_from_inside_the_store(aws: MotoAws, tmp_path: Path) -> None:
    source, _ = a_file(tmp_path / "scratch" / "pre-rollback.dump", 10_000)
    outside, _ = a_file(tmp_path / "elsewhere" / "keep.dump", 10)
    for root in (str(tmp_path / "backups"), f"s3://{BUCKET}/team/rollback"):
        store = open_artifact_store(root)
        stored = store.put(source, "prod@r/pre-rollback.dump")
        kept = store.put(source, "prod/pre-rollback.dump")
        with pytest.raises(ArtifactError):
            store.delete(str(outside))  # never anything outside the store
        with pytest.raises(ArtifactError):
            store.delete(f"s3://{BUCKET}/other/prod/pre-rollback.dump")
        assert store.delete(stored.location) is True
        assert store.delete(stored.location) is False  # already gone: said, not an error
        assert outside.is_file()
        with fetched(store, kept.location, hashlib.sha256(source.read_bytes()).hexdigest(), 10_000, tmp_path / "d"):
            pass  # the other dump is still there, whole
    assert aws.object_keys(BUCKET) == ["team/rollback/prod/pre-rollback.dump"]


def test_s3_is_reached_through_the_service_specific_endpoint_too(
    moto_server: MotoAws, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    moto_server.reset()
    moto_server.create_bucket(BUCKET)
    for name in CONFLICTING_ENV:
        monkeypatch.delenv(name, raising=False)
    for name, value in moto_server.environment(service_specific=True, service="s3").items():
        monkeypatch.setenv(name, value)
    source, sha256 = a_file(tmp_path / "x.dump", 1000)
    assert open_artifact_store(f"s3://{BUCKET}").put(source, "x.dump").sha256 == sha256
    assert moto_server.object_keys(BUCKET) == ["x.dump"]


def test_a_missing_bucket_is_named_not_a_stack_trace(aws: MotoAws) -> None:
    with pytest.raises(ArtifactError) as refused:
        open_artifact_store("s3://no-such-bucket-here/prefix").check_writable()
    assert "NoSuchBucket" in refused.value.message and "backup_dir" in refused.value.hint


def test_boto3_is_loaded_only_for_an_s3_location(tmp_path: Path) -> None:
    script = f"""
        import sys
        from pathlib import Path
        from bot.artifacts import open_artifact_store
        store = open_artifact_store({str(tmp_path / "backups")!r})
        (Path({str(tmp_path)!r}) / "f").write_bytes(b"x")
        store.put(Path({str(tmp_path)!r}) / "f", "prod/f")
        print("boto3" in sys.modules)
        open_artifact_store("s3://bucket/prefix").describe()
        print("boto3" in sys.modules)
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


MEMORY_PROBE = """
import json, sys
from pathlib import Path
from bot.artifacts import open_artifact_store


def kib(field):
    # /proc/self/status, not getrusage: ru_maxrss is carried over from the parent (pytest, holding moto's
    # objects) across fork and exec, so it would hide this process's own peak.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def peak_growth(action):
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current RSS
    before = kib("VmRSS")
    result = action()
    return result, kib("VmHWM") - before


source, sha256, size, downloads = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
store = open_artifact_store(sys.argv[5])
warm = source.with_name("warm")
warm.write_bytes(b"w" * 1000)
warmed = store.put(warm, "warm")  # the client built, boto3 and the transfer manager loaded
store.fetch(warmed.location, warmed.sha256, warmed.size, downloads)
stored, put_kib = peak_growth(lambda: store.put(source, "prod/big.dump"))
path, fetch_kib = peak_growth(lambda: store.fetch(stored.location, sha256, size, downloads))
print(json.dumps({"put_kib": put_kib, "fetch_kib": fetch_kib, "sha256": stored.sha256, "size": path.stat().st_size}))
"""


@pytest.mark.parametrize("where", ["s3", "folder"])
def test_memory_stays_flat_whatever_the_dump_size(aws: MotoAws, tmp_path: Path, where: str) -> None:
    size = 200 * 1024 * 1024
    source, sha256 = a_file(tmp_path / "scratch" / "big.dump", size)
    location = f"s3://{BUCKET}/memory" if where == "s3" else str(tmp_path / "backups")
    args = [sys.executable, "-c", MEMORY_PROBE, str(source), sha256, str(size), str(tmp_path / "dl"), location]
    out = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ), check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["sha256"] == sha256 and seen["size"] == size
    # a 200 MiB dump: parts in flight are bounded (16 MiB × 4) and reads are 1 MiB, so well under half of it
    assert seen["put_kib"] < 100 * 1024 and seen["fetch_kib"] < 100 * 1024, seen


# --- two machines: a CI runner takes the restore point, the bot (elsewhere) restores it ---------------------

URL_ENV = "RB_TEST_DATABASE_URL"
PREFIX = "rollback/team-shop"
CLI = str(Path(sys.executable).with_name("rollback-bot"))


@dataclass
class TwoMachines:
    repo: SandboxRepo
    db_name: str
    db_url: str
    store_url: str
    ci_config: Path  # the ephemeral CI runner: its own config and work_dir
    bot_config: Path  # the bot: another config and work_dir, the same S3 prefix and store

    def cli(self, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
        """The real command line, in a process of its own, as on that machine."""
        return subprocess.run(
            [CLI, *args, "--config", str(config)], capture_output=True, text=True, timeout=300, check=False
        )

    def deploy_bad_release(self) -> None:
        repo = self.repo
        git(repo.clone, "push", "--quiet", "--force", repo.remote_name, f"{repo.bad}:refs/heads/{repo.branch}")
        deploy_bad_release(self.db_url)


@pytest.fixture
def two_machines(aws: MotoAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TwoMachines]:
    repo = build_sandbox_repo(tmp_path / "git")
    db_name = f"rb_shop_{secrets.token_hex(4)}"
    db_url = create_database(db_name)
    monkeypatch.setenv(URL_ENV, db_url)
    health = HealthServer()
    store_url = f"sqlite:///{tmp_path / 'shared-state' / 'rollback-bot.db'}"  # one store, shared by both
    text = config_text(repo=repo, url_env=URL_ENV, health_url=health.start(), store=store_url)

    def machine(name: str) -> Path:
        config = tmp_path / name / "rollback.toml"
        config.parent.mkdir(parents=True)
        config.write_text(text.replace('backup_dir = "backups"', f'backup_dir = "s3://{BUCKET}/{PREFIX}"'))
        return config

    # The good release is live (the state the pipeline snapshots before it deploys).
    git(repo.clone, "push", "--quiet", "--force", repo.remote_name, f"{repo.good}:refs/heads/{repo.branch}")
    deploy_good_release(db_url)
    try:
        yield TwoMachines(repo, db_name, db_url, store_url, machine("ci-runner"), machine("bot-host"))
    finally:
        health.stop()
        drop_databases(db_name)


def remote_head(repo: SandboxRepo) -> str:
    return git(Path(repo.remote_url), "rev-parse", f"refs/heads/{repo.branch}")


def test_a_restore_point_taken_on_a_ci_runner_is_restored_by_the_bot_on_another_machine(
    two_machines: TwoMachines, aws: MotoAws, tmp_path: Path
) -> None:
    m = two_machines
    good = database_contents(m.db_url)
    taken = m.cli(m.ci_config, "snapshot", "prod")
    assert taken.returncode == 0, taken.stderr
    assert f"s3://{BUCKET}/{PREFIX}/prod/restore-point-" in taken.stdout
    [key] = aws.object_keys(BUCKET, PREFIX)
    dump = aws.object_bytes(BUCKET, key)
    assert not list((m.ci_config.parent / "work" / "scratch").rglob("*.dump"))  # scratch deleted after upload
    shutil.rmtree(m.ci_config.parent)  # the runner is gone, and its disk with it

    store = Store(m.store_url)
    try:
        point = store.latest_restore_point("prod")
        assert point is not None and point.dump_path == f"s3://{BUCKET}/{key}"
        assert point.dump_sha256 == hashlib.sha256(dump).hexdigest() and point.dump_size == len(dump)
        assert point.commit_sha == m.repo.good

        m.deploy_bad_release()
        bad = database_contents(m.db_url)
        ran = m.cli(m.bot_config, "run", "prod", "--force")
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert database_contents(m.db_url) == good  # exactly the restore point's data, on a machine that never had it
        assert tree(m.repo, remote_head(m.repo)) == tree(m.repo, m.repo.good)

        run = store.list_runs()[0]
        assert run.status == "succeeded"
        steps = {s.name: s for s in store.steps(run.id)}
        assert f"sha256 {point.dump_sha256[:12]}" in " ".join(steps["safety"].details["passed"])
        pre = steps["pre_dump"].details
        assert pre["location"].startswith(f"s3://{BUCKET}/{PREFIX}/prod/pre-rollback-")
        pre_bytes = aws.object_bytes(BUCKET, pre["location"].removeprefix(f"s3://{BUCKET}/"))
        assert pre["sha256"] == hashlib.sha256(pre_bytes).hexdigest() and pre["size_bytes"] == len(pre_bytes)
    finally:
        store.close()
    assert restored_contents(pre_bytes, m.db_name + "_verify", tmp_path) == bad  # the pre-rollback dump is good
    work = m.bot_config.parent / "work"
    assert not [p for p in work.rglob("*") if p.is_file() and "repos" not in p.parts]  # no scratch left behind


def test_a_corrupted_restore_point_object_is_refused_by_sha256_before_anything_changes(
    two_machines: TwoMachines, aws: MotoAws
) -> None:
    m = two_machines
    assert m.cli(m.ci_config, "snapshot", "prod").returncode == 0
    [key] = aws.object_keys(BUCKET, PREFIX)
    m.deploy_bad_release()
    head, data = remote_head(m.repo), database_contents(m.db_url)
    dump = bytearray(aws.object_bytes(BUCKET, key))
    dump[len(dump) // 2] ^= 0x01  # a single bit: still a plausible dump, but not the one recorded
    aws.put_object_bytes(BUCKET, key, bytes(dump))

    ran = m.cli(m.bot_config, "run", "prod", "--force")
    assert ran.returncode == 1
    assert "sha256" in ran.stdout + ran.stderr and "does not match" in ran.stdout + ran.stderr
    store = Store(m.store_url)
    try:
        run = store.list_runs()[0]
        assert run.status == "failed" and run.current_step == "safety"
        assert f"s3://{BUCKET}/{key}" in (run.error or "") and "sha256" in (run.error or "")
    finally:
        store.close()
    assert database_contents(m.db_url) == data and remote_head(m.repo) == head  # nothing changed
    assert aws.object_keys(BUCKET, f"{PREFIX}/prod/pre-rollback-") == []  # not even the pre-rollback dump
    assert not list((m.bot_config.parent / "work").rglob("*.dump"))  # the corrupt download is not kept


def tree(repo: SandboxRepo, ref: str) -> str:
    return git(Path(repo.remote_url), "rev-parse", f"{ref}^{{tree}}")


def restored_contents(dump: bytes, name: str, tmp_path: Path) -> dict[str, list[tuple[object, ...]]]:
    path = tmp_path / "check.dump"
    path.write_bytes(dump)
    drop_databases(name)
    url = create_database(name)
    try:
        subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "-d", url, str(path)], check=True)
        return database_contents(url)
    finally:
        drop_databases(name)
