"""A realistic git sandbox: a bare "production" remote and a clone, with a good and a bad release.

Used by the tests and by `rollback-bot demo`. The history, oldest first, on `branch`:

    initial ── good release ── bad release ── merge of feature/cache
                    └──────── cache layer ────────┘

The bad release adds a Prisma migration that drops a column and a table, so the migration scan has
something to find; the merge commit is the deployed head, so rollbacks cross a merge.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.errors import GitError

_IDENTITY = {"user.name": "Sandbox Dev", "user.email": "dev@sandbox.invalid", "commit.gpgsign": "false"}

GOOD_APP = '''"""The shop's order service."""


def order_total(items: list[tuple[str, int, float]]) -> float:
    return round(sum(qty * price for _, qty, price in items), 2)
'''

BAD_APP = '''"""The shop's order service."""


def order_total(items: list[tuple[str, int, float]]) -> float:
    # New pricing: applies the discount twice (the bug this release shipped).
    subtotal = sum(qty * price for _, qty, price in items)
    return round(subtotal * 0.9 * 0.9, 2)
'''

INIT_MIGRATION = """-- CreateTable
CREATE TABLE "orders" (
    "id" SERIAL NOT NULL,
    "customer" TEXT NOT NULL,
    "total" DECIMAL(10,2) NOT NULL,
    "legacy_ref" TEXT,
    CONSTRAINT "orders_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "audit_old" (
    "id" SERIAL NOT NULL,
    "note" TEXT NOT NULL DEFAULT 'created; not dropped',
    CONSTRAINT "audit_old_pkey" PRIMARY KEY ("id")
);
"""

DROP_MIGRATION = """-- Legacy cleanup for the new pricing release.
-- AlterTable
ALTER TABLE "orders" DROP COLUMN "legacy_ref";

-- DropTable
DROP TABLE "audit_old";

-- CreateIndex
CREATE INDEX "orders_customer_idx" ON "orders"("customer");
"""

CACHE_MODULE = '''"""A small read-through cache for price lookups."""

_cache: dict[str, float] = {}


def cached_price(sku: str, lookup: object) -> float:
    if sku not in _cache:
        _cache[sku] = lookup(sku)  # type: ignore[operator]
    return _cache[sku]
'''


@dataclass
class SandboxRepo:
    remote_url: str  # the bare repository's path: a remote anyone can clone or push to
    clone: Path  # a working clone whose remote `remote_name` is the bare repository
    good: str  # the good release (a safe rollback target)
    bad: str  # the deployed head: the merge commit on top of the bad release
    branch: str
    remote_name: str
    bad_release: str = ""  # the bad release commit itself (first parent of `bad`)
    side: str = ""  # the feature branch commit merged by `bad`

    @property
    def bare(self) -> Path:
        return Path(self.remote_url)

    def remote_head(self) -> str:
        return git(self.bare, "rev-parse", f"refs/heads/{self.branch}")


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git in `cwd` and return its stripped stdout; GitError with git's stderr if it fails."""
    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    done = subprocess.run(["git", *args], cwd=cwd, env=full_env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GitError(
            f"sandbox: `git {' '.join(args[:2])}` failed in {cwd}: {done.stderr.strip()}",
            hint="check that git ≥ 2.28 is installed",
        )
    return done.stdout.strip()


def build_sandbox_repo(root: Path, *, remote_name: str = "production", branch: str = "release") -> SandboxRepo:
    """Create `root/remote.git` (bare) and `root/app` (a clone), with the history described above."""
    bare, clone = root / "remote.git", root / "app"
    if bare.exists() or clone.exists():
        raise GitError(f"{root} already holds a sandbox", hint="use an empty directory")
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "--quiet", "--bare", "-b", branch, str(bare))
    git(root, "init", "--quiet", "-b", branch, str(clone))
    _configure(clone)
    git(clone, "remote", "add", remote_name, str(bare))

    now = datetime.now(UTC).replace(microsecond=0)
    _commit(
        clone,
        {"README.md": "# shop\n\nThe order service.\n"},
        "Initial commit",
        when=now - timedelta(days=10),
    )
    good = _commit(
        clone,
        {
            "app/orders.py": GOOD_APP,
            "prisma/schema.prisma": 'datasource db {\n  provider = "postgresql"\n}\n',
            "prisma/migrations/20261101_init/migration.sql": INIT_MIGRATION,
        },
        "Release 1.4.0: order totals",
        when=now - timedelta(days=3),
    )
    git(clone, "checkout", "--quiet", "-b", "feature/cache", good)
    side = _commit(clone, {"app/cache.py": CACHE_MODULE}, "Add a price cache", when=now - timedelta(days=1))
    git(clone, "checkout", "--quiet", branch)
    bad_release = _commit(
        clone,
        {"app/orders.py": BAD_APP, "prisma/migrations/20261120_drop_legacy/migration.sql": DROP_MIGRATION},
        "Release 1.5.0: new pricing, drop legacy columns",
        when=now - timedelta(hours=3),
    )
    merge_message = f"Merge branch 'feature/cache' into {branch}"
    stamp = _dates(now - timedelta(hours=2))
    git(clone, "merge", "--quiet", "--no-ff", "-m", merge_message, "feature/cache", env=stamp)
    bad = git(clone, "rev-parse", "HEAD")
    git(clone, "push", "--quiet", "-u", remote_name, f"{branch}:refs/heads/{branch}")
    return SandboxRepo(
        remote_url=str(bare),
        clone=clone,
        good=good,
        bad=bad,
        branch=branch,
        remote_name=remote_name,
        bad_release=bad_release,
        side=side,
    )


def push_commit_elsewhere(remote_url: str, *, work: Path, branch: str, files: dict[str, str], message: str) -> str:
    """Someone else pushes a commit to `branch` from their own clone in `work`; returns its SHA."""
    git(work.parent, "clone", "--quiet", "-b", branch, remote_url, str(work))
    _configure(work)
    sha = _commit(work, files, message, when=datetime.now(UTC).replace(microsecond=0))
    git(work, "push", "--quiet", "origin", f"{branch}:refs/heads/{branch}")
    return sha


def add_reject_hook(bare: Path, *, message: str, only_refs: str = "") -> Path:
    """Install a pre-receive hook that prints `message` to stderr and refuses the push; return its path.

    `only_refs` (a shell pattern such as "refs/rollback-backup/*") refuses only pushes to matching
    refs; empty refuses every push.
    """
    say = f"printf '%s\\n' {shlex.quote(message)} >&2"
    if only_refs:
        body = (
            "status=0\n"
            "while read -r old new ref; do\n"
            f'  case "$ref" in {only_refs}) {say}; status=1 ;; esac\n'
            "done\n"
            "exit $status\n"
        )
    else:
        body = f"cat >/dev/null\n{say}\nexit 1\n"
    hook = bare / "hooks" / "pre-receive"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\n" + body)
    hook.chmod(0o755)
    return hook  # unlink it to accept pushes again


def _configure(clone: Path) -> None:
    # Tests run where no global identity exists; signing would need a key the sandbox does not have.
    for key, value in _IDENTITY.items():
        git(clone, "config", key, value)


def _dates(when: datetime) -> dict[str, str]:
    stamp = when.isoformat()
    return {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}


def _commit(clone: Path, files: dict[str, str], message: str, *, when: datetime) -> str:
    for name, text in files.items():
        path = clone / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(clone, "add", "--", *files)
    git(clone, "commit", "--quiet", "-m", message, env=_dates(when))
    return git(clone, "rev-parse", "HEAD")
