"""The git backend against real repositories: a bare "production" remote and a working clone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bot.backends.git import GitRepo
from bot.errors import BadRequest, GitError, PushRejected
from sandbox.repo import (
    GOOD_APP,
    SandboxRepo,
    add_reject_hook,
    build_sandbox_repo,
    git,
    push_commit_elsewhere,
)

BACKUP = "refs/rollback-backup/release/202611240412"


@pytest.fixture
def sandbox(tmp_path: Path) -> SandboxRepo:
    return build_sandbox_repo(tmp_path / "sandbox")


@pytest.fixture
def local(sandbox: SandboxRepo, tmp_path: Path) -> GitRepo:
    """The bot working from the engineer's existing clone."""
    return GitRepo(repo=str(sandbox.clone), remote="production", branch="release", work_dir=tmp_path / "work")


@pytest.fixture
def cloned(sandbox: SandboxRepo, tmp_path: Path) -> GitRepo:
    """The bot working from its own bare clone of the remote."""
    return GitRepo(repo=sandbox.remote_url, remote="production", branch="release", work_dir=tmp_path / "work")


def tree(repo: Path, sha: str) -> str:
    return git(repo, "rev-parse", f"{sha}^{{tree}}")


def remote_ref(sandbox: SandboxRepo, ref: str) -> str | None:
    out = git(sandbox.bare, "for-each-ref", "--format=%(objectname)", ref)
    return out or None


def someone_pushes(sandbox: SandboxRepo, tmp_path: Path) -> str:
    return push_commit_elsewhere(
        sandbox.remote_url,
        work=tmp_path / "colleague",
        branch=sandbox.branch,
        files={"HOTFIX.md": "hand-made hotfix\n"},
        message="Hotfix pushed by hand during the incident",
    )


# --- fetch and lookups ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["local", "cloned"])
def test_fetch_returns_the_remote_head(which: str, request: pytest.FixtureRequest, sandbox: SandboxRepo) -> None:
    repo: GitRepo = request.getfixturevalue(which)
    head = repo.fetch()
    assert head.sha == sandbox.bad
    assert head.subject == "Merge branch 'feature/cache' into release"
    assert head.author == "Sandbox Dev"
    assert head.committed_at is not None


def test_fetch_sees_a_push_made_after_the_first_fetch(cloned: GitRepo, sandbox: SandboxRepo, tmp_path: Path) -> None:
    assert cloned.fetch().sha == sandbox.bad
    newer = someone_pushes(sandbox, tmp_path)
    assert cloned.fetch().sha == newer


def test_local_clone_is_never_touched(local: GitRepo, sandbox: SandboxRepo, tmp_path: Path) -> None:
    clone = sandbox.clone
    # The engineer is mid-work: on another branch, with staged, unstaged and untracked changes.
    git(clone, "checkout", "--quiet", "feature/cache")
    (clone / "app" / "cache.py").write_text("# work in progress\n")
    (clone / "notes.txt").write_text("untracked\n")
    (clone / "README.md").write_text("staged edit\n")
    git(clone, "add", "README.md")

    def snapshot() -> tuple[str, ...]:
        files = [
            clone / "app" / "cache.py",
            clone / "notes.txt",
            clone / "README.md",
            clone / ".git" / "index",
        ]
        digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
        return (
            git(clone, "symbolic-ref", "HEAD"),
            git(clone, "rev-parse", "HEAD"),
            git(clone, "rev-parse", "refs/heads/release"),
            git(clone, "status", "--porcelain"),
            digest,
        )

    before = snapshot()
    newer = someone_pushes(sandbox, tmp_path)
    assert local.fetch().sha == newer
    result = local.revert_to(deployed=newer, target=sandbox.good, message="Roll back to the good release")
    assert snapshot() == before
    assert git(clone, "rev-parse", "refs/remotes/production/release") == result.new_head


def test_resolve_accepts_full_and_abbreviated_shas(local: GitRepo, sandbox: SandboxRepo) -> None:
    assert local.resolve(sandbox.good).sha == sandbox.good
    assert local.resolve(sandbox.good[:7]).sha == sandbox.good
    assert local.resolve(sandbox.good[:7].upper()).sha == sandbox.good
    assert local.resolve(sandbox.good[:7]).subject == "Release 1.4.0: order totals"


def test_resolve_branch_name_means_the_fetched_remote_branch(cloned: GitRepo, sandbox: SandboxRepo) -> None:
    cloned.fetch()
    assert cloned.resolve("release").sha == sandbox.bad
    assert cloned.resolve("production/release").sha == sandbox.bad


@pytest.mark.parametrize(
    "bad_input",
    ["--upload-pack=evil", "-n", "a..b", "HEAD@{1}", "rm -rf", "abc;ls", "", "x" * 300, "--output=/tmp/x"],
)
def test_resolve_refuses_anything_that_is_not_a_sha_or_ref(local: GitRepo, bad_input: str) -> None:
    with pytest.raises(GitError) as caught:
        local.resolve(bad_input)
    assert "is not a commit SHA or a ref name" in caught.value.message
    assert caught.value.hint


def test_resolve_unknown_sha_names_the_remote_and_branch(local: GitRepo) -> None:
    with pytest.raises(GitError) as caught:
        local.resolve("abc1234")
    assert caught.value.message == "commit 'abc1234' not found in production/release's repository"
    assert "git log production/release" in caught.value.hint


def test_commits_between_newest_first(local: GitRepo, sandbox: SandboxRepo) -> None:
    commits = local.commits_between(sandbox.good, sandbox.bad)
    assert [c.sha for c in commits] == [sandbox.bad, sandbox.bad_release, sandbox.side]
    assert {c.sha for c in commits} == {sandbox.bad, sandbox.bad_release, sandbox.side}
    assert all(c.committed_at is not None and c.author == "Sandbox Dev" for c in commits)
    assert local.commits_between(sandbox.bad, sandbox.good) == []


def test_ancestry_parents_files(local: GitRepo, sandbox: SandboxRepo) -> None:
    assert local.is_ancestor(sandbox.good, sandbox.bad)
    assert not local.is_ancestor(sandbox.bad, sandbox.good)
    assert local.first_parent(sandbox.bad).sha == sandbox.bad_release
    assert local.first_parent(sandbox.bad_release).sha == sandbox.good
    root = git(sandbox.clone, "rev-list", "--max-parents=0", sandbox.bad)
    with pytest.raises(GitError, match="has no parent"):
        local.first_parent(root)
    assert local.changed_files(sandbox.good, sandbox.bad) == [
        "app/cache.py",
        "app/orders.py",
        "prisma/migrations/20261120_drop_legacy/migration.sql",
    ]
    assert local.read_file(sandbox.good, "app/orders.py") == GOOD_APP
    assert local.read_file(sandbox.good, "prisma/migrations/20261120_drop_legacy/migration.sql") is None
    assert local.read_file(sandbox.good, "app") is None  # a directory is not a file


def test_fetch_errors_name_remote_and_branch(sandbox: SandboxRepo, tmp_path: Path) -> None:
    missing = GitRepo(repo=str(sandbox.clone), remote="production", branch="hotfix", work_dir=tmp_path / "w")
    with pytest.raises(GitError, match="branch 'hotfix' does not exist on remote 'production'"):
        missing.fetch()
    git(sandbox.clone, "remote", "add", "gone", str(tmp_path / "no-such-remote.git"))
    unreachable = GitRepo(repo=str(sandbox.clone), remote="gone", branch="release", work_dir=tmp_path / "w")
    with pytest.raises(GitError, match=r"could not fetch gone \(release\)"):
        unreachable.fetch()


def test_local_clone_without_the_remote_is_refused(sandbox: SandboxRepo, tmp_path: Path) -> None:
    repo = GitRepo(repo=str(sandbox.clone), remote="staging", branch="release", work_dir=tmp_path / "w")
    with pytest.raises(GitError, match="has no remote named 'staging'"):
        repo.fetch()


@pytest.mark.parametrize(("remote", "branch"), [("--evil", "release"), ("production", "-x"), ("p", "a..b")])
def test_bad_remote_or_branch_names_are_refused(remote: str, branch: str, tmp_path: Path) -> None:
    with pytest.raises(GitError):
        GitRepo(repo=str(tmp_path), remote=remote, branch=branch, work_dir=tmp_path / "w")


# --- cloning ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("as_url", [False, True])
def test_clones_a_remote_into_work_dir(sandbox: SandboxRepo, tmp_path: Path, as_url: bool) -> None:
    source = Path(sandbox.remote_url).as_uri() if as_url else sandbox.remote_url
    work = tmp_path / "work"
    repo = GitRepo(repo=source, remote="production", branch="release", work_dir=work)
    assert repo.fetch().sha == sandbox.bad
    clones = list(work.iterdir())
    assert len(clones) == 1 and clones[0].name.endswith(".git")
    assert git(clones[0], "rev-parse", "--is-bare-repository") == "true"
    assert git(clones[0], "remote", "get-url", "production") == source
    # A second instance (the next run) reuses the clone.
    again = GitRepo(repo=source, remote="production", branch="release", work_dir=work)
    assert again.resolve(sandbox.good[:8]).sha == sandbox.good
    assert list(work.iterdir()) == clones


def test_failed_clone_leaves_nothing_behind(tmp_path: Path) -> None:
    work = tmp_path / "work"
    repo = GitRepo(repo=str(tmp_path / "missing.git"), remote="production", branch="release", work_dir=work)
    with pytest.raises(GitError, match="could not clone"):
        repo.fetch()
    assert list(work.iterdir()) == []


def test_clone_errors_never_show_the_password(tmp_path: Path) -> None:
    url = "http://deploy:s3cretT0ken@127.0.0.1:9/app.git"  # port 9 (discard): refused at once
    repo = GitRepo(repo=url, remote="production", branch="release", work_dir=tmp_path / "w")
    with pytest.raises(GitError) as caught:
        repo.fetch()
    assert "s3cretT0ken" not in str(caught.value)


# --- revert -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["local", "cloned"])
def test_revert_to_the_good_release(which: str, request: pytest.FixtureRequest, sandbox: SandboxRepo) -> None:
    repo: GitRepo = request.getfixturevalue(which)
    deployed = repo.fetch().sha
    result = repo.revert_to(deployed=deployed, target=sandbox.good, message="Roll back to 1.4.0 (INC-42)")

    head = sandbox.remote_head()
    assert result.strategy == "revert"
    assert (result.old_head, result.new_head) == (sandbox.bad, head)
    assert tree(sandbox.bare, head) == tree(sandbox.bare, sandbox.good)
    assert repo.is_ancestor(sandbox.bad, head)  # the bad deploy is still in history
    assert git(sandbox.bare, "rev-list", "--count", f"{sandbox.bad}..{head}") == "1"
    assert git(sandbox.bare, "rev-parse", f"{head}^1") == sandbox.bad
    assert git(sandbox.bare, "log", "-1", "--format=%s%n%an", head) == "Roll back to 1.4.0 (INC-42)\nrollback-bot"
    assert git(sandbox.bare, "show", f"{head}:app/orders.py") + "\n" == GOOD_APP
    assert repo.read_file(head, "prisma/migrations/20261120_drop_legacy/migration.sql") is None
    assert "undoing 3 commits" in result.summary


def test_revert_across_a_merge_to_its_first_parent(local: GitRepo, sandbox: SandboxRepo) -> None:
    result = local.revert_to(deployed=sandbox.bad, target=sandbox.bad_release, message="Undo the cache merge")
    assert tree(sandbox.bare, result.new_head) == tree(sandbox.bare, sandbox.bad_release)
    assert local.read_file(result.new_head, "app/cache.py") is None
    assert local.read_file(result.new_head, "prisma/migrations/20261120_drop_legacy/migration.sql") is not None


def test_revert_to_the_merged_side_branch(local: GitRepo, sandbox: SandboxRepo) -> None:
    # The side commit is not on the first-parent line: the result is still exactly its tree.
    result = local.revert_to(deployed=sandbox.bad, target=sandbox.side, message="Back to the cache branch")
    assert tree(sandbox.bare, result.new_head) == tree(sandbox.bare, sandbox.side)
    assert sandbox.remote_head() == result.new_head


def test_hook_rejection_raises_push_rejected_and_changes_nothing(local: GitRepo, sandbox: SandboxRepo) -> None:
    add_reject_hook(sandbox.bare, message="release is frozen during INC-42")
    with pytest.raises(PushRejected) as caught:
        local.revert_to(deployed=sandbox.bad, target=sandbox.good, message="Roll back")
    assert "release is frozen during INC-42" in caught.value.message
    assert "pre-receive hook declined" in caught.value.message
    assert "hook" in caught.value.hint
    assert sandbox.remote_head() == sandbox.bad


def test_stale_lease_is_refused_not_clobbered(cloned: GitRepo, sandbox: SandboxRepo, tmp_path: Path) -> None:
    deployed = cloned.fetch().sha
    hotfix = someone_pushes(sandbox, tmp_path)
    with pytest.raises(PushRejected) as caught:
        cloned.revert_to(deployed=deployed, target=sandbox.good, message="Roll back")
    assert "stale info" in caught.value.message
    assert "someone pushed to release" in caught.value.hint
    assert sandbox.remote_head() == hotfix


def test_revert_refuses_nothing_to_do(local: GitRepo, sandbox: SandboxRepo) -> None:
    with pytest.raises(BadRequest):
        local.revert_to(deployed=sandbox.bad, target=sandbox.bad, message="noop")
    with pytest.raises(BadRequest):
        local.revert_to(deployed=sandbox.bad, target=sandbox.good, message="  ")
    assert sandbox.remote_head() == sandbox.bad


# --- force-push -------------------------------------------------------------------------------------


def _log_ref_updates(bare: Path) -> Path:
    log = bare / "updates.log"
    hook = bare / "hooks" / "pre-receive"
    hook.write_text(f'#!/bin/sh\nwhile read -r old new ref; do echo "$ref $new" >> "{log}"; done\n')
    hook.chmod(0o755)
    return log


def test_force_push_saves_the_old_head_first(local: GitRepo, sandbox: SandboxRepo) -> None:
    log = _log_ref_updates(sandbox.bare)
    result = local.force_push(deployed=sandbox.bad, target=sandbox.good, backup_ref=BACKUP)

    assert result.strategy == "force-push"
    assert (result.old_head, result.new_head, result.backup_ref) == (sandbox.bad, sandbox.good, BACKUP)
    assert remote_ref(sandbox, BACKUP) == sandbox.bad
    assert sandbox.remote_head() == sandbox.good
    assert log.read_text().splitlines() == [f"{BACKUP} {sandbox.bad}", f"refs/heads/release {sandbox.good}"]


def test_force_push_stops_when_the_backup_is_refused(local: GitRepo, sandbox: SandboxRepo) -> None:
    add_reject_hook(sandbox.bare, message="no custom refs here", only_refs="refs/rollback-backup/*")
    with pytest.raises(PushRejected) as caught:
        local.force_push(deployed=sandbox.bad, target=sandbox.good, backup_ref=BACKUP)
    assert "no custom refs here" in caught.value.message
    assert "release was not moved" in caught.value.message
    assert sandbox.remote_head() == sandbox.bad
    assert remote_ref(sandbox, BACKUP) is None


def test_force_push_never_overwrites_an_existing_backup(local: GitRepo, sandbox: SandboxRepo) -> None:
    git(sandbox.bare, "update-ref", BACKUP, sandbox.good)
    with pytest.raises(GitError, match="already exists"):
        local.force_push(deployed=sandbox.bad, target=sandbox.good, backup_ref=BACKUP)
    assert remote_ref(sandbox, BACKUP) == sandbox.good
    assert sandbox.remote_head() == sandbox.bad


def test_force_push_retry_reuses_its_own_backup(local: GitRepo, sandbox: SandboxRepo) -> None:
    git(sandbox.bare, "update-ref", BACKUP, sandbox.bad)  # a first attempt saved it, then crashed
    local.force_push(deployed=sandbox.bad, target=sandbox.good, backup_ref=BACKUP)
    assert sandbox.remote_head() == sandbox.good


def test_force_push_with_a_stale_lease_is_refused(cloned: GitRepo, sandbox: SandboxRepo, tmp_path: Path) -> None:
    deployed = cloned.fetch().sha
    hotfix = someone_pushes(sandbox, tmp_path)
    with pytest.raises(PushRejected, match="stale info"):
        cloned.force_push(deployed=deployed, target=sandbox.good, backup_ref=BACKUP)
    assert sandbox.remote_head() == hotfix


@pytest.mark.parametrize("backup", ["rollback-backup/x", "refs/heads/release", "refs/a..b", "--force"])
def test_force_push_refuses_bad_backup_names(local: GitRepo, sandbox: SandboxRepo, backup: str) -> None:
    with pytest.raises(BadRequest):
        local.force_push(deployed=sandbox.bad, target=sandbox.good, backup_ref=backup)
    assert sandbox.remote_head() == sandbox.bad
