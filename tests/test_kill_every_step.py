"""kill -9 of a terminal rollback in the middle of every step and as each step ends, then `resume --retry`.

Whatever the moment, the resumed run ends succeeded with nothing repeated that must not be: exactly one
rollback commit on the remote, the flag turned off with one write, one swap (one kept database), the
pre-rollback dump taken, and no shadow database left. (README: "When things break".)
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from urllib.parse import urlsplit

import psycopg
import pytest

from bot.cli import main
from bot.config import load_config
from bot.engine.restore_points import take_snapshot
from bot.engine.steps import STEPS
from bot.services import Services, build_services
from sandbox.flag_servers import LaunchDarklyServer
from sandbox.repo import git
from sandbox.scenario import PG_ADMIN_URL, Incident, create_database, database_contents, drop_databases
from tests.fixtures.runs import good_contents, start_rollback, step_status
from tests.fixtures.waiting import wait_for

MOMENTS = [(step.name, moment) for step in STEPS for moment in ("running", "ok")]


@pytest.mark.incident_config(with_flags=True)
@pytest.mark.parametrize(("step", "moment"), MOMENTS, ids=[f"{s}-{m}" for s, m in MOMENTS])
def test_kill_9_then_resume_repeats_nothing(incident: Incident, services: Services, step: str, moment: str) -> None:
    repo, flags = incident.repo, incident.flags
    assert flags is not None
    wanted = good_contents()  # the restore point's data

    bot = start_rollback(incident)
    try:
        killed = _kill_when(bot, services, step, moment)
    finally:
        if bot.poll() is None:
            bot.kill()
        bot.wait(timeout=10)
    run = services.store.list_runs(limit=1)[0]
    # Not killed, or killed a moment too late: the run ended before (a step too quick to catch).
    if killed and services.store.get_run(run.id).status != "succeeded":
        assert main(["resume", run.id, "--retry", "--config", str(incident.config_path)]) == 0
    assert services.store.get_run(run.id).status == "succeeded"

    assert git(repo.bare, "rev-list", "--count", f"{repo.bad}..refs/heads/{repo.branch}") == "1"
    assert _flag_writes(flags) == 1 and not flags.flag_on("new-pricing")
    assert database_contents(incident.db_url) == wanted
    assert len(_databases(incident, "_before_rollback_")) == 1  # one swap: a retry never restores twice
    assert _databases(incident, "_rb_shadow_") == []
    dump = next(s for s in services.store.steps(run.id) if s.name == "pre_dump")
    assert dump.status == "ok" and dump.details.get("sha256")


def _kill_when(bot: subprocess.Popen[bytes], services: Services, step: str, moment: str) -> bool:
    """SIGKILL the bot as soon as `step` is seen `moment` in the journal; False if the run ended first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and bot.poll() is None:
        if step_status(services, step) == moment:
            bot.send_signal(signal.SIGKILL)
            return True
        time.sleep(0.005)
    return False


def _flag_writes(flags: LaunchDarklyServer) -> int:
    """PATCH requests that reached the vendor whole. urllib3 sends a request's headers and its body in two
    writes, so a kill between them leaves the stand-in a PATCH cut short: recorded, but no write (the
    vendor cannot apply half a body, and the flag stays as it was)."""
    whole = 0
    for request in flags.requests:
        length = next((v for k, v in request.headers.items() if k.lower() == "content-length"), "0")
        whole += request.method == "PATCH" and len(request.body) == int(length)
    return whole


def test_a_patch_cut_short_by_a_kill_is_recorded_but_writes_nothing() -> None:
    """What _flag_writes leaves out: the headers of a PATCH, then the connection gone before its body."""
    with LaunchDarklyServer() as vendor:
        vendor.set_flag("new-pricing", True)
        address = urlsplit(vendor.base_url)
        with socket.create_connection((address.hostname, address.port)) as conn:
            conn.sendall(
                b"PATCH /api/v2/flags/default/new-pricing HTTP/1.1\r\nHost: vendor\r\n"
                + f"Authorization: {vendor.api_key}\r\n".encode()
                + b"Content-Type: application/json; domain-model=launchdarkly.semanticpatch\r\n"
                + b"Content-Length: 80\r\n\r\n"
            )
        wait_for("the stand-in to record it", lambda: bool(vendor.requests))
        assert [r.method for r in vendor.requests] == ["PATCH"] and _flag_writes(vendor) == 0
        assert vendor.flag_on("new-pricing")


def _databases(incident: Incident, mark: str) -> list[str]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{incident.db_name}{mark}%",))
        return [str(r[0]) for r in rows]


def test_kill_9_after_the_swap_committed_but_before_it_was_journaled_does_not_restore_twice(
    incident: Incident,
) -> None:
    """The narrowest window: PostgreSQL has renamed the databases, the journal does not know yet. With
    the store in PostgreSQL, the test locks the database step's journal row once the load is done, so the
    bot can swap but not journal the swap; it sees the swap done, then kills the bot. The retry must see
    the swap done (the live name now carries the shadow's oid) instead of restoring again over what the
    application wrote since."""
    store_url = create_database(incident.db_name + "_state")
    config = incident.config_path.read_text().replace(
        'store = "sqlite:///state/rollback-bot.db"', f'store = "{store_url}"'
    )
    incident.config_path.write_text(config)
    services = build_services(config=load_config(incident.config_path))
    try:
        take_snapshot(services, "prod", actor="deploy-pipeline")  # a restore point in this store
        with psycopg.connect(incident.db_url, autocommit=True) as conn:
            conn.execute("UPDATE orders SET total = 0")  # what the rollback must undo
        _crash_in_the_swap_window(incident, services, store_url)

        run = services.store.list_runs(limit=1)[0]
        with psycopg.connect(incident.db_url, autocommit=True) as conn:  # the app writes to the restored data
            conn.execute("INSERT INTO orders (customer, total) VALUES ('written after the swap', 1)")
        args = ["resume", run.id, "--retry", "--config", str(incident.config_path)]
        assert main(args) == 0
        database = next(s for s in services.store.steps(run.id) if s.name == "database")
        assert database.status == "ok" and "earlier attempt had completed" in database.summary
        assert len(_databases(incident, "_before_rollback_")) == 1  # one swap
        orders = database_contents(incident.db_url)["orders"]
        assert any("written after the swap" in row for row in orders)  # nothing the app wrote was moved aside
    finally:
        services.close()
        drop_databases(incident.db_name + "_state")


def _crash_in_the_swap_window(incident: Incident, services: Services, store_url: str) -> None:
    bot = start_rollback(incident, "--to", incident.repo.good)
    try:
        with psycopg.connect(store_url) as holder:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and bot.poll() is None:
                row = holder.execute(
                    "SELECT details FROM steps WHERE name = 'database' AND status = 'running' FOR UPDATE"
                ).fetchone()
                if row and "shadow_id" in row[0]:  # loaded and about to swap: its journal row is ours now
                    break
                holder.rollback()
                time.sleep(0.005)
            else:
                raise AssertionError("the load never finished")
            wait_for("the swap, done in PostgreSQL", lambda: _swapped(incident))
            bot.send_signal(signal.SIGKILL)
            bot.wait(timeout=10)
    finally:
        if bot.poll() is None:
            bot.kill()
        bot.wait(timeout=10)


def _swapped(incident: Incident) -> bool:
    """The live name is on the restored copy: a database kept aside exists, no shadow does."""
    return bool(_databases(incident, "_before_rollback_")) and not _databases(incident, "_rb_shadow_")
