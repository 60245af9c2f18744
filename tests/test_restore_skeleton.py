"""One restore procedure for three engines, against the real servers: each one measures how far its dump and
its restore have got, and a restore that fails while loading ends the same way in each: through the one
drop-on-failure path, with the live database untouched and no shadow left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.backends import restore as skeleton
from bot.backends.base import Database, ProgressUnit
from bot.backends.mysql import MySQLDatabase
from bot.backends.postgres import PostgresDatabase
from bot.backends.reporter import Reporter
from bot.backends.sqlite import SQLiteDatabase
from bot.errors import RestoreFailed
from tests.fixtures.databases import (
    mysql_database,
    mysql_databases,
    pg_databases,
    postgres_database,
    sqlite_contents,
    sqlite_database,
)
from tests.test_rds import SNAPSHOT, _scripted

TAG = "ab12cd34"


@dataclass
class Recorder:
    """A progress callback that keeps everything it is told (done, total and unit come as keywords)."""

    calls: list[tuple[str, float | None, float | None, ProgressUnit | None]] = field(default_factory=list)

    def __call__(self, message: str, /, **measure: Any) -> None:
        self.calls.append((message, measure.get("done"), measure.get("total"), measure.get("unit")))

    def sentences(self) -> list[str]:
        return [message for message, *_ in self.calls]

    def measures(self) -> list[tuple[float, float | None, ProgressUnit | None]]:
        return [(done, total, unit) for _, done, total, unit in self.calls if done is not None]


@dataclass
class Engine:
    backend: Database
    live: str  # the live database as messages name it
    contents: Callable[[], dict[str, list[tuple[Any, ...]]]]
    shadows: Callable[[], list[str]]
    dump_name: str
    restore_unit: ProgressUnit
    hooks: str  # the class implementing restore.RestoreHooks
    break_load: Callable[[bytes], bytes]  # a dump that passes the first check but fails once loading


def _pg_break(data: bytes) -> bytes:
    return data[: int(len(data) * 0.6)]  # the table of contents reads; the data at the end is gone


def _mysql_break(data: bytes) -> bytes:
    middle = data.index(b"INSERT INTO `orders`")
    return data[:middle] + b"THIS IS NOT SQL;\n" + data[middle:]  # the trailer is there; the server refuses


def _sqlite_break(data: bytes) -> bytes:
    return data[: len(data) // 2]  # staged fine; its integrity check fails before the live file is touched


# Per engine: the dump's file name, the restore's unit, the class implementing its hooks, how to break a load.
_ENGINES: dict[str, tuple[str, ProgressUnit, str, Callable[[bytes], bytes]]] = {
    "postgres": ("good.dump", "objects", "PostgresRestore", _pg_break),
    "mysql": ("good.sql", "tables", "MySQLRestore", _mysql_break),
    "sqlite": ("good.db", "bytes", "SQLiteRestore", _sqlite_break),
}


def _shadows_of(names: Callable[[str], list[str]], live: str) -> Callable[[], list[str]]:
    return lambda: [n for n in names(live[:14]) if "_rb_shadow_" in n]


@pytest.fixture(params=list(_ENGINES))
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    spec = _ENGINES[request.param]
    if request.param == "postgres":
        with postgres_database() as pg:
            yield Engine(PostgresDatabase(pg.url), pg.name, pg.contents, _shadows_of(pg_databases, pg.name), *spec)
    elif request.param == "mysql":
        with mysql_database() as my:
            yield Engine(MySQLDatabase(my.url), my.name, my.contents, _shadows_of(mysql_databases, my.name), *spec)
    else:
        (tmp_path / "data").mkdir()
        live = tmp_path / "data" / "app.db"
        backend = SQLiteDatabase(sqlite_database(live, rows=20000))

        def staged() -> list[str]:
            return [p.name for p in live.parent.iterdir() if ".rb_restore_" in p.name]

        yield Engine(backend, str(live), lambda: sqlite_contents(live), staged, *spec)


def _monotonic(measures: list[tuple[float, float | None, ProgressUnit | None]]) -> None:
    dones = [done for done, _, _ in measures]
    assert dones == sorted(dones), f"done went backwards: {dones}"
    assert all(total is None or done <= total for done, total, _ in measures), measures


def test_a_dump_measures_bytes_written_against_the_expected_size(engine: Engine, tmp_path: Path) -> None:
    progress = Recorder()
    info = engine.backend.dump(tmp_path / "dumps" / engine.dump_name, progress=progress)

    measures = progress.measures()
    assert {unit for _, _, unit in measures} == {"bytes"}
    _monotonic(measures)
    first, last = measures[0], measures[-1]
    assert first[0] == 0 and first[1] is not None and first[1] > 0  # the estimate is known from the start
    assert last[0] == last[1] == info.size_bytes  # and it ends at the dump's real size
    assert any("verified" in s for s in progress.sentences())


def test_a_restore_measures_its_load_and_ends_at_the_total(engine: Engine, tmp_path: Path) -> None:
    info = engine.backend.dump(tmp_path / "dumps" / engine.dump_name)
    before = engine.contents()
    progress = Recorder()

    result = engine.backend.restore(info.path, progress=progress)

    measures = progress.measures()
    assert measures and {unit for _, _, unit in measures} == {engine.restore_unit}
    _monotonic(measures)
    total = info.size_bytes if engine.restore_unit == "bytes" else info.entries  # SQLite: pages × page size
    assert measures[0][0] == 0 and {t for _, t, _ in measures} == {total}
    assert measures[-1][:2] == (total, total)
    sentences = progress.sentences()
    assert sentences[0] == f"checking {info.path.name}"  # the skeleton's words, the same for every engine
    assert any(s.startswith(f"restored {info.entries} ") and result.previous in s for s in sentences)
    assert engine.contents() == before and engine.shadows() == []


def test_a_load_failure_ends_the_same_way_in_every_engine(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = engine.backend.dump(tmp_path / "dumps" / engine.dump_name).path
    bad = tmp_path / f"bad-{engine.dump_name}"
    bad.write_bytes(engine.break_load(good.read_bytes()))
    before = engine.contents()
    shadow = engine.backend.shadow_name(TAG)
    dropped: list[tuple[str, str, bool]] = []
    drop = skeleton._drop_quietly

    def spy(hooks: skeleton.RestoreHooks, name: str, say: Reporter) -> None:
        dropped.append((type(hooks).__name__, name, hooks.exists(name)))
        drop(hooks, name, say)

    monkeypatch.setattr(skeleton, "_drop_quietly", spy)
    progress = Recorder()

    with pytest.raises(RestoreFailed) as failure:
        engine.backend.restore(bad, progress=progress, shadow=shadow)

    assert dropped == [(engine.hooks, shadow, True)]  # the shadow existed, and the one path dropped it
    assert failure.value.message.endswith(f"the live database {engine.live} was not touched")
    assert failure.value.hint
    assert engine.shadows() == [] and engine.contents() == before
    assert f"creating {'staged copy' if engine.hooks == 'SQLiteRestore' else 'shadow database'} {shadow}" in (
        progress.sentences()
    )


def test_the_mysql_measure_moves_table_by_table_while_the_client_loads(tmp_path: Path) -> None:
    with mysql_database() as my:
        backend = MySQLDatabase(my.url)
        info = backend.dump(tmp_path / "good.sql")
        text = info.path.read_bytes()
        cut = text.index(b"UNLOCK TABLES;\n") + len(b"UNLOCK TABLES;\n")  # after the first table's data
        slow = tmp_path / "slow.sql"
        slow.write_bytes(text[:cut] + b"DO SLEEP(1.5);\n" + text[cut:])
        progress = Recorder()

        backend.restore(slow, progress=progress)

    between = [done for done, total, _ in progress.measures() if 0 < done < (total or 0)]
    assert between, progress.calls  # measured while the client sat in the middle of the dump


def test_a_sentence_only_callback_still_gets_every_step_and_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Scripts and older callers pass a one-argument callable: measures reach them as sentences, never as
    # a TypeError swallowed (and logged) on every tick.
    live = tmp_path / "app.db"
    backend = SQLiteDatabase(sqlite_database(live))
    messages: list[str] = []
    dump = backend.dump(tmp_path / "good.db", progress=messages.append).path
    backend.restore(dump, progress=messages.append)
    assert any(m.startswith("dumping ") for m in messages) and any(m.startswith("verifying ") for m in messages)
    assert any(m.startswith("restored ") for m in messages)
    assert "progress callback failed" not in caplog.text


def test_rds_waits_measure_seconds_against_the_timeout() -> None:
    # The first status answers the look-up for an existing instance; the wait polls the next three.
    restorer, _, _ = _scripted(["creating", "creating", "backing-up", "available"], timeout_s=3600)
    progress = Recorder()
    restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id="new-db", run_id="run-1", progress=progress)
    measures = progress.measures()
    assert measures == [(0.0, 3600, "seconds"), (15.0, 3600, "seconds"), (30.0, 3600, "seconds")]
    assert progress.sentences()[-1] == "new-db: available after 30s"
