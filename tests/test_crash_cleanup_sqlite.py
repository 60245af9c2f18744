"""An SQLite restore killed with SIGKILL mid-way leaves nothing behind and nothing broken.

The restore runs in a child process (the "bot"), SIGKILLed while it waits for a lock held by the
test: before it changed anything (only the staged copy, the "shadow", exists), or inside its write
transaction, after it saved the previous data and before it could commit.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from bot import format as fmt
from bot.backends.sqlite import SQLiteDatabase
from bot.errors import DatabaseError, RestoreFailed
from tests.crash_process import CrashingBot
from tests.fixtures.databases import sqlite_contents, sqlite_database

TAG = "ab12cd34"


def wreck(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM orders WHERE id > 100")
        conn.execute("UPDATE customers SET name = 'renamed by the bad release'")
        conn.commit()


def leftovers(folder: Path, live: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != live.name and p.parent == live.parent)


def setup(tmp_path: Path) -> tuple[SQLiteDatabase, Path, Path, dict[str, list[tuple[object, ...]]]]:
    folder = tmp_path / "data"
    folder.mkdir()
    live = folder / "app.db"
    backend = SQLiteDatabase(sqlite_database(live))
    before = sqlite_contents(live)
    dump = backend.dump(tmp_path / "dumps" / "good.db").path
    wreck(live)
    return backend, live, dump, before


def test_a_restore_killed_before_it_changed_anything_leaves_a_staged_copy_that_discard_deletes(
    tmp_path: Path,
) -> None:
    backend, live, dump, before = setup(tmp_path)
    wrecked = sqlite_contents(live)
    shadow = backend.shadow_name(TAG)
    assert shadow == str(live.with_name(f".app.db.rb_restore_{TAG}"))

    with closing(sqlite3.connect(live, isolation_level=None)) as app:
        app.execute("BEGIN IMMEDIATE")  # the app is writing: the restore waits for the lock
        bot = CrashingBot("sqlite", f"sqlite:///{live}", dump, shadow, tmp_path / "bot.log", busy_timeout_s=120)
        bot.wait_for("the restore waiting for the live file's lock", lambda: "restoring good.db" in bot.output())
        time.sleep(0.3)
        bot.kill(tree=True)
        app.execute("COMMIT")

    assert leftovers(live.parent, live) == [Path(shadow).name]
    assert backend.repair_interrupted_swap() == []
    assert backend.discard_shadow(shadow) == f"deleted the leftover staged copy {Path(shadow).name} ({_size(dump)})"
    assert backend.discard_shadow(shadow) is None
    assert leftovers(live.parent, live) == [] and sqlite_contents(live) == wrecked

    result = backend.restore(dump, shadow=shadow)
    assert sqlite_contents(live) == before and leftovers(live.parent, live) == [Path(result.previous).name]


def _size(path: Path) -> str:

    return fmt.size(path.stat().st_size)


def test_a_restore_killed_inside_its_write_transaction_is_rolled_back_and_the_saved_copy_kept(
    tmp_path: Path,
) -> None:
    backend, live, dump, before = setup(tmp_path)
    wrecked = sqlite_contents(live)
    shadow = backend.shadow_name(TAG)

    # No lock of ours can hold the restore inside its write transaction (it keeps the live file's
    # EXCLUSIVE lock from its first page to its commit, milliseconds later), hence sqlite.py's
    # fault-injection seam: the bot pauses right after saving the previous data, and is killed there.
    pause = {"RB_FAULT_INJECTION_PAUSE": "sqlite-restore-saved-previous-data"}
    bot = CrashingBot("sqlite", f"sqlite:///{live}", dump, shadow, tmp_path / "bot.log", env=pause)
    bot.wait_for("the previous data saved", lambda: "saving the current data" in bot.output())
    partial = next(live.parent.glob("app.db.before_rollback_*.partial"))
    bot.wait_for("the saved copy complete", lambda: partial.stat().st_size == live.stat().st_size)
    time.sleep(0.3)
    bot.kill(tree=True)
    hot_journal = live.with_name("app.db-journal").exists()

    said = backend.repair_interrupted_swap()

    kept = partial.with_name(partial.name.removesuffix(".partial"))
    assert said[0] == f"kept the data from before an interrupted restore as {kept.name} (it was left as {partial.name})"
    assert said[1:] in ([], ["SQLite rolled back the unfinished restore left in app.db-journal"] if hot_journal else [])
    assert sqlite_contents(live) == wrecked and sqlite_contents(kept) == wrecked
    with closing(sqlite3.connect(live)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert backend.repair_interrupted_swap() == []

    assert backend.discard_shadow(shadow) is not None
    result = backend.restore(dump, shadow=shadow)
    assert sqlite_contents(live) == before
    assert leftovers(live.parent, live) == sorted([kept.name, Path(result.previous).name])


def test_an_incomplete_saved_copy_is_deleted(tmp_path: Path) -> None:
    backend, live, _, _ = setup(tmp_path)
    partial = live.with_name("app.db.before_rollback_202401010000.partial")
    partial.write_bytes(live.read_bytes()[:1000])  # killed while copying: the restore never got further
    said = backend.repair_interrupted_swap()
    assert len(said) == 1 and said[0].startswith(f"deleted {partial.name}") and not partial.exists()


def test_only_staged_copies_beside_the_live_file_are_ever_deleted_or_restored_into(tmp_path: Path) -> None:
    backend, live, dump, _ = setup(tmp_path)
    kept = backend.restore(dump).previous
    elsewhere = tmp_path / f".app.db.rb_restore_{TAG}"
    elsewhere.write_bytes(b"x")
    for name in [str(live), kept, str(elsewhere), str(live.with_name(".app.db.rb_restore_")), "app.db"]:
        with pytest.raises(DatabaseError) as refusal:
            backend.discard_shadow(name)
        assert "not a shadow name" in refusal.value.message
        with pytest.raises(RestoreFailed):
            backend.restore(dump, shadow=name)
    assert live.exists() and Path(kept).exists() and elsewhere.exists()
