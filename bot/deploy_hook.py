"""POST /hooks/deploy: the deploy pipeline asks the bot to take a restore point (dump included).

    curl -X POST https://bot.example.com/hooks/deploy \\
         -H "Authorization: Bearer $ROLLBACK_DEPLOY_TOKEN" -d '{"env": "prod", "sha": "4f2a9c1"}'

The token is the value of the variable named by `[bot] deploy_token_env`; without that key the hook
does not exist (404, saying how to enable it). Answers: 401 wrong or missing token, 400 malformed body
(naming the field), 404 unknown environment, 429 when too many snapshots are already waiting, 202
accepted with an id. The id is in the restore point's `created_by` and in every audit entry about it.

The snapshot (a git fetch and a full dump) runs on this module's own small thread pool, never on the
HTTP server's threads, with a bounded number waiting, so a burst of deploys cannot starve Slack.

`sha` is the commit the pipeline says is live (the known-good one, called before it deploys):
- the remote branch head is (or starts with) `sha`: the restore point is the head, as
  `rollback-bot snapshot` would record it;
- the head is elsewhere but `sha` exists in the repository (the branch moved ahead of what is
  deployed, or a race with the push): the restore point is recorded at `sha`, because that is what
  production runs, and the audit trail says where the head was and whether `sha` is on the branch;
- `sha` is not in the repository: nothing is dumped or recorded; the failure is logged and written
  to the audit trail (`deploy_hook.failed`), since a restore point for an unknown commit could never
  be rolled back to.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bot.engine.restore_points import take_snapshot
from bot.errors import GitError, RollbackError, UnknownEnvironment
from bot.redact import redact, register_secret
from bot.store import now

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

DEPLOY_PATH = "/hooks/deploy"
WORKERS = 2  # snapshots at once: each is a full dump, so more would only fight over the database
MAX_WAITING = 8  # accepted but not finished; beyond it the pipeline is told to retry (429)
MAX_BODY = 16 * 1024
_SHA = re.compile(r"^[0-9a-fA-F]{7,40}$")
ACTOR = "deploy-hook"

Reply = tuple[int, dict[str, Any]]
_REASONS = {
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    429: "Too Many Requests",
}


class DeployHook:
    """The WSGI handler for DEPLOY_PATH; `shutdown()` when the server stops."""

    def __init__(self, services: Services, *, executor: Executor | None = None, max_waiting: int = MAX_WAITING):
        self.services = services
        self._executor = executor or ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="deploy-hook")
        self._owns_executor = executor is None
        self._slots = threading.BoundedSemaphore(max_waiting)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            status, payload = self.handle(
                method=environ.get("REQUEST_METHOD", ""),
                authorization=environ.get("HTTP_AUTHORIZATION", ""),
                read_body=lambda limit: _read_body(environ, limit),
            )
        except Exception:  # never a 5xx page with a traceback; the log has it (redacted)
            log.exception("deploy hook failed to answer")
            status, payload = 500, {"ok": False, "error": "internal error; see the bot's log"}
        body = json.dumps(payload).encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="rollback-bot"'))
        elif status == 405:
            headers.append(("Allow", "POST"))
        elif status == 429:
            headers.append(("Retry-After", "30"))
        start_response(f"{status} {_REASONS.get(status, 'Internal Server Error')}", headers)
        return [body]

    def handle(self, *, method: str, authorization: str, read_body: Callable[[int], bytes | None]) -> Reply:
        token_env = self.services.config.settings.bot.deploy_token_env
        expected = os.environ.get(token_env) if token_env else None
        if not expected:
            return 404, _disabled(token_env)
        register_secret(expected)
        if method != "POST":
            return 405, {"ok": False, "error": f"{DEPLOY_PATH} accepts POST only"}
        scheme, _, given = authorization.strip().partition(" ")
        # Compared in constant time, as bytes (compare_digest refuses non-ASCII str).
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
            return 401, {"ok": False, "error": "missing or wrong token: send Authorization: Bearer <token>"}
        raw = read_body(MAX_BODY)
        if raw is None:
            return 413, {"ok": False, "error": f"the body is larger than {MAX_BODY} bytes"}
        request, problem = _parse(raw)
        if problem is not None:
            return 400, problem
        env, sha = request["env"], request["sha"].lower()
        try:
            self.services.config.environment(env)
        except UnknownEnvironment as error:
            return 404, {"ok": False, "field": "env", "error": error.message, "hint": error.hint}
        if not self._slots.acquire(blocking=False):
            return 429, {"ok": False, "error": f"{MAX_WAITING} restore points are already being taken; retry later"}
        job_id = f"deploy-{env}-{now():%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
        self.services.store.record(
            actor=ACTOR, action="deploy_hook.accepted", env=env, detail=f"{job_id}: the pipeline says {sha} is live"
        )
        try:
            self._executor.submit(self._take, job_id, env, sha)
        except RuntimeError:  # the pool is shutting down
            self._slots.release()
            raise
        log.info("deploy hook %s accepted: restore point of %s at %s", job_id, env, sha)
        return 202, {
            "ok": True,
            "id": job_id,
            "env": env,
            "sha": sha,
            "status": "accepted",
            "look_for": f"the restore point created by '{ACTOR} {job_id}' (rollback-bot history; the audit trail)",
        }

    def shutdown(self, *, wait: bool = True) -> None:
        if self._owns_executor:
            self._executor.shutdown(wait=wait)

    # --- the background part -------------------------------------------------------------------------

    def _take(self, job_id: str, env: str, sha: str) -> None:
        store = self.services.store
        try:
            repo = self.services.repo(env)
            head = repo.fetch()
            commit = head.sha
            if not head.sha.startswith(sha):
                try:
                    commit = repo.resolve(sha).sha
                except GitError:
                    where = f"{repo.remote}/{repo.branch} is at {head.short}"
                    reason = f"{sha} is not in the repository ({where}); no restore point taken"
                    log.warning("deploy hook %s failed: %s", job_id, reason)
                    store.record(actor=ACTOR, action="deploy_hook.failed", env=env, detail=f"{job_id}: {reason}")
                    return
                on_branch = "on the branch" if repo.is_ancestor(commit, head.sha) else "NOT on the branch"
                store.record(
                    actor=ACTOR,
                    action="deploy_hook.head_mismatch",
                    env=env,
                    detail=f"{job_id}: {repo.remote}/{repo.branch} is at {head.short}, the pipeline says {sha} "
                    f"({on_branch}) is live; the restore point is recorded at {commit[:7]}",
                )
            result = take_snapshot(self.services, env, actor=f"{ACTOR} {job_id}", commit=commit)
            store.record(actor=ACTOR, action="deploy_hook.done", env=env, detail=f"{job_id}: {result.summary}")
            log.info("deploy hook %s: %s", job_id, result.summary)
        except RollbackError as error:
            log.warning("deploy hook %s failed: %s", job_id, redact(str(error)))
            store.record(actor=ACTOR, action="deploy_hook.failed", env=env, detail=f"{job_id}: {error}")
        except Exception as error:  # recorded, never lost in a worker thread
            log.exception("deploy hook %s failed", job_id)
            store.record(
                actor=ACTOR, action="deploy_hook.failed", env=env, detail=f"{job_id}: {type(error).__name__}: {error}"
            )
        finally:
            self._slots.release()


def _disabled(token_env: str | None) -> dict[str, Any]:
    if token_env:
        how = f"export {token_env}=<token> where the bot runs (the pipeline sends the same value)"
        return {"ok": False, "error": f"the deploy hook is off: {token_env} is not set", "hint": how}
    how = 'set [bot] deploy_token_env = "ROLLBACK_DEPLOY_TOKEN" in rollback.toml and export that variable'
    return {"ok": False, "error": "the deploy hook is not enabled", "hint": how}


def _read_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The request body, or None if it is larger than `limit`."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        return None
    stream = environ.get("wsgi.input")
    return stream.read(length) if stream is not None and length > 0 else b""


def _parse(raw: bytes) -> tuple[dict[str, str], dict[str, Any] | None]:
    """({env, sha}, None) or ({}, a 400 body naming the field)."""

    def bad(field: str, error: str) -> tuple[dict[str, str], dict[str, Any]]:
        return {}, {"ok": False, "field": field, "error": error, "expected": '{"env": "prod", "sha": "<commit>"}'}

    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return bad("body", "the body is not JSON")
    if not isinstance(data, dict):
        return bad("body", "the body must be a JSON object")
    env, sha = data.get("env"), data.get("sha")
    if env is None:
        return bad("env", "env is missing")
    if not isinstance(env, str) or not env.strip():
        return bad("env", "env must be a non-empty string (an environment name)")
    if sha is None:
        return bad("sha", "sha is missing")
    if not isinstance(sha, str):
        return bad("sha", "sha must be a string (a commit SHA)")
    if not _SHA.match(sha):
        return bad("sha", "sha must be a commit SHA: 7 to 40 hexadecimal characters")
    return {"env": env, "sha": sha}, None
