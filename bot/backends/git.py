"""The code backend: a deployable branch on a git remote, rolled back without ever using a working tree.

`repo` is either a local clone, used as is (its working tree, index and checked-out branch are never
touched: only objects and `refs/remotes/<remote>/<branch>` are written), or the URL of the remote, which
is cloned bare into `work_dir` on first use. Every push names its expected old value
(`--force-with-lease=<ref>:<sha>`), so a push racing someone else's is refused instead of clobbering.
A rehearsal's scratch branch (only under `rollback-bot/`) is created and deleted with the same leases,
its remote-tracking ref in the local clone deleted with it.

Size: one class, because revert, force-push and scratch branches share the fetch, the lease-pinned push, the re-read of
the remote and the retry-safety checks; splitting them would scatter the one invariant (never push over a
remote that moved) across modules.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import git

from bot.backends.base import CodeResult, Commit
from bot.backends.dbtools import TOOL_NICENESS
from bot.errors import BadRequest, GitError, PushRejected
from bot.redact import redact

# What a user may type as a commit: an (abbreviated) SHA, or a plain ref name with optional ~N / ^N.
# Anything else is refused before git sees it, so user input can never become a git option.
_HEX = re.compile(r"[0-9a-fA-F]{4,40}")
_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+\-]*(?:[~^][0-9]{0,4})*")
_REMOTE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._\-]*")
_BRANCH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/\-]*")
_URL_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://|^[^/\\\s]+@[^/\\\s]+:")
_KNOWN_MAX = 10_000  # commits a GitRepo remembers (GitRepo._known)
_SEP = "\x1f"
_LOG_FORMAT = "%H%x1f%s%x1f%an%x1f%cI"
_MAX_REASON = 400
_MAX_REF = 200
_FETCH_OPTS = ("--no-tags", "--no-write-fetch-head", "--no-recurse-submodules")
# --no-verify: a local pre-push hook (test suites, linters) must not stand between on-call and a
# rollback; the remote's own hooks still apply. --no-signed: never wait on a GPG prompt.
_PUSH_OPTS = ("--porcelain", "--no-verify", "--no-signed", "--recurse-submodules=no")
_LOG = ("log", "--no-show-signature", f"--format={_LOG_FORMAT}")
# -z: paths come unquoted whatever core.quotePath says; --no-renames: a rename is listed as its old
# and its new path, whatever diff.renames says.
_DIFF = ("diff", "--name-only", "--no-renames", "--no-ext-diff", "-z")
# The only branches the bot creates or deletes: a rehearsal's scratch stand-ins for a deployable branch.
SCRATCH_BRANCHES = "rollback-bot/"
REHEARSAL_MARKER = ".rollback-bot-rehearsal"  # the one file a stand-in deploy adds (stand_in_deploy)


@dataclass(frozen=True)
class _Outcome:
    status: int
    stdout: str
    stderr: str

    @property
    def reason(self) -> str:
        """The useful part of git's complaint, secrets masked, for a one-line message."""
        lines = [ln.strip() for ln in self.stderr.splitlines() if ln.strip()]
        useful = [ln for ln in lines if not ln.startswith(("hint:", "To ", "Done"))] or lines
        text = " ".join(useful) or f"git exited with status {self.status}"
        text = redact(text)
        return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _valid_ref_name(name: str, pattern: re.Pattern[str] = _BRANCH_NAME) -> bool:
    shape_ok = len(name) <= _MAX_REF and pattern.fullmatch(name) is not None
    return shape_ok and not any(b in name for b in ("..", "//", "/.", "@{")) and not name.endswith((".", "/", ".lock"))


def _looks_like_ref(text: str) -> bool:
    return _HEX.fullmatch(text) is not None or _valid_ref_name(text, _REF)


def _clone_dir_name(source: str) -> str:
    # The readable tail of the URL (never its credentials, which live before the host) plus a hash,
    # so two remotes called "app" do not share a clone.
    tail = re.split(r"[/:\\]", source.rstrip("/\\"))[-1]
    tail = tail.removesuffix(".git")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip(".-")[:40] or "repo"
    digest = hashlib.sha256(source.encode()).hexdigest()[:10]
    return f"{safe}-{digest}.git"


class GitRepo:
    """A `CodeRepo` over git: fetch, inspect, revert with `commit-tree`, force-push behind a backup ref."""

    def __init__(
        self,
        *,
        repo: str,
        remote: str,
        branch: str,
        work_dir: Path,
        author_name: str = "rollback-bot",
        author_email: str = "rollback-bot@localhost",
        network_timeout_s: float = 120.0,
    ) -> None:
        if not _REMOTE_NAME.fullmatch(remote):
            raise GitError(f"'{remote}' is not a valid git remote name", hint="fix `remote` in rollback.toml")
        if not _valid_ref_name(branch):
            raise GitError(f"'{branch}' is not a valid branch name", hint="fix `branch` in rollback.toml")
        if not repo.strip():
            raise GitError("no repository configured", hint="set `repo` in rollback.toml")
        self.remote = remote
        self.branch = branch
        self._source = repo.strip()
        self._work_dir = work_dir
        self._author = (author_name, author_email)
        self._timeout = network_timeout_s
        self._repo: git.Repo | None = None
        self._ssh_command: str | None = None
        # Full SHA → its commit, as git read it: a SHA names one commit forever, so each is asked once
        # (a plan names the same few commits a dozen times; each question is a git process).
        self._known: dict[str, Commit] = {}  # at most _KNOWN_MAX, then started again

    # --- the CodeRepo protocol ----------------------------------------------------------------------

    def fetch(self) -> Commit:
        tracking = self._tracking_ref
        out = self._exec("fetch", *_FETCH_OPTS, "--", self.remote, f"+refs/heads/{self.branch}:{tracking}", net=True)
        if out.status != 0:
            raise self._remote_error(out, doing="fetch")
        return self._commit(self._rev_parse(tracking, shown=f"{self.remote}/{self.branch}"))

    def resolve(self, ref: str) -> Commit:
        return self._commit(self._full_sha(ref))

    def first_parent(self, sha: str) -> Commit:
        full = self._full_sha(sha)
        parents = self._ok("rev-list", "--parents", "-n", "1", full, "--", doing="read parents").split()
        if len(parents) < 2:
            raise GitError(
                f"commit {full[:7]} has no parent: it is the first commit of the repository",
                hint="choose the target explicitly with `to SHA`",
            )
        return self._commit(parents[1])

    def commits_between(self, older: str, newer: str) -> list[Commit]:
        old, new = self._full_sha(older), self._full_sha(newer)
        text = self._ok(*_LOG, f"{old}..{new}", "--", doing="list commits")
        return [_parse_commit(line) for line in text.splitlines() if line]

    def is_ancestor(self, older: str, newer: str) -> bool:
        old, new = self._full_sha(older), self._full_sha(newer)
        out = self._exec("merge-base", "--is-ancestor", old, new)
        if out.status in (0, 1):
            return out.status == 0
        raise GitError(f"could not compare {old[:7]} and {new[:7]}: {out.reason}", hint=self._repo_hint)

    def changed_files(self, older: str, newer: str) -> list[str]:
        old, new = self._full_sha(older), self._full_sha(newer)
        text = self._ok(*_DIFF, old, new, "--", doing="list changed files")
        return [p for p in text.split("\0") if p]

    def read_file(self, sha: str, path: str) -> str | None:
        full = self._full_sha(sha)
        clean = path.strip().removeprefix("./")
        if not clean or "\0" in clean or "\n" in clean:
            raise BadRequest(f"'{path}' is not a file path", hint="give a path relative to the repository root")
        out = self._exec("cat-file", "blob", f"{full}:{clean}", verbatim=True)
        return out.stdout if out.status == 0 else None

    def revert_to(self, *, deployed: str, target: str, message: str) -> CodeResult:
        old, tgt = self._full_sha(deployed), self._full_sha(target)
        if not message.strip():
            raise BadRequest("a revert commit needs a message", hint="describe the rollback in the message")
        if old == tgt:
            raise BadRequest(
                f"{old[:7]} is both the deployed and the target commit: there is nothing to revert",
                hint="choose an older target with `to SHA`",
            )
        tree = self._ok("rev-parse", "--verify", f"{tgt}^{{tree}}", doing="read the target's tree")
        if tree == self._ok("rev-parse", "--verify", f"{old}^{{tree}}", doing="read the deployed tree"):
            raise BadRequest(
                f"the deployed commit {old[:7]} already has exactly the files of {tgt[:7]}",
                hint="nothing to revert: choose another target, or roll back with `--code none`",
            )
        name, email = self._author
        who = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email}
        who |= {"GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email}
        # commit-tree writes one object and moves no ref: the new commit has the target's tree and the
        # deployed commit as its parent, so history is kept and merges in between need no resolution.
        args = ("commit-tree", "--no-gpg-sign", tree, "-p", old, "-m", message)
        new = self._ok(*args, doing="create the revert commit", env=who)
        self._push(f"{new}:refs/heads/{self.branch}", expect=old, action=f"update {self.branch}")
        self._confirm_head(new)
        undone = len(self.commits_between(tgt, old)) if self.is_ancestor(tgt, old) else 0
        what = f", undoing {undone} commit{'s' if undone != 1 else ''}" if undone else ""
        return CodeResult(
            strategy="revert",
            old_head=old,
            new_head=new,
            summary=f"pushed {new[:7]} to {self.remote}/{self.branch}: the files of {tgt[:7]} "
            f"on top of {old[:7]}{what}",
        )

    def force_push(self, *, deployed: str, target: str, backup_ref: str) -> CodeResult:
        if not (backup_ref.startswith("refs/") and _valid_ref_name(backup_ref)):
            raise BadRequest(
                f"'{backup_ref}' is not a full ref name for the backup",
                hint="use a name like refs/rollback-backup/<branch>/<timestamp>",
            )
        if backup_ref == f"refs/heads/{self.branch}":
            raise BadRequest("the backup ref cannot be the branch being rolled back", hint="pick another name")
        old, tgt = self._full_sha(deployed), self._full_sha(target)
        if old == tgt:
            raise BadRequest(
                f"{old[:7]} is both the deployed and the target commit: there is nothing to roll back",
                hint="choose an older target with `to SHA`",
            )
        self._save_backup(old, backup_ref)
        # A lease alone allows the non-fast-forward move; `--force` would override the lease, so it is
        # deliberately not passed.
        self._push(f"{tgt}:refs/heads/{self.branch}", expect=old, action=f"move {self.branch}")
        self._confirm_head(tgt)
        return CodeResult(
            strategy="force-push",
            old_head=old,
            new_head=tgt,
            backup_ref=backup_ref,
            summary=f"moved {self.remote}/{self.branch} from {old[:7]} to {tgt[:7]}; "
            f"the old head is kept as {backup_ref}",
        )

    # --- scratch branches (a rehearsal's stand-in for the deployable branch) ---------------------------

    def create_branch_at(self, sha: str, name: str) -> str:
        """Create the scratch branch `name` on the remote at `sha`; say what was done.

        Only names under SCRATCH_BRANCHES: a deployable branch is never created (nor deleted) this way.
        The push's lease is "must not exist yet", so a branch somebody else made is never taken over;
        one already at `sha` (a retry after a lost answer) is accepted as is.
        """
        ref = self._scratch_ref(name)
        full = self._full_sha(sha)
        existing = self._ls_remote(ref)
        if existing == full:
            return f"{self.remote}/{name} already existed at {full[:7]}"
        if existing is not None:
            raise GitError(
                f"branch {name} already exists on {self.remote} at {existing[:7]}, not {full[:7]}: it was not touched",
                hint=f"delete it if it is a leftover (`git push {self.remote} --delete {name}`), then retry",
            )
        self._push(f"{full}:{ref}", expect="", action=f"create the branch {name}")
        landed = self._ls_remote(ref)
        if landed != full:
            raise GitError(
                f"the branch {name} is not on {self.remote} at {full[:7]} after pushing it "
                f"(found {landed[:7] if landed else 'nothing'})",
                hint=f"check that {self.remote} accepts new branches under {SCRATCH_BRANCHES}",
            )
        return f"created {self.remote}/{name} at {full[:7]}"

    def stand_in_deploy(self, sha: str, *, note: str) -> str:
        """A new commit on top of `sha` that only adds the file REHEARSAL_MARKER (holding `note`); its sha.

        For a rehearsal while production runs its restore point's very commit: the scratch branch then
        gets this commit, standing in for the next deploy, so the rollback has a real commit to revert and
        push. Written without a working tree (a private index file, commit-tree): no ref moves here, and
        the object only reaches the remote on the scratch branch.
        """
        full = self._full_sha(sha)
        with tempfile.TemporaryDirectory(prefix="rb-stand-in-") as scratch:
            text = Path(scratch) / "note"
            text.write_text(note.rstrip("\n") + "\n", encoding="utf-8")
            blob = self._ok("hash-object", "-w", str(text), doing="write the rehearsal's marker file")
            index = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            self._ok("read-tree", full, doing="read the deployed commit's tree", env=index)
            self._ok(
                "update-index",
                "--add",
                "--cacheinfo",
                f"100644,{blob},{REHEARSAL_MARKER}",
                doing="add the rehearsal's marker file",
                env=index,
            )
            tree = self._ok("write-tree", doing="write the stand-in's tree", env=index)
        name, email = self._author
        who = {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name}
        who["GIT_COMMITTER_EMAIL"] = email
        message = f"rollback-bot rehearsal: stands in for a deploy on top of {full[:7]}"
        return self._ok("commit-tree", "--no-gpg-sign", tree, "-p", full, "-m", message, doing="commit it", env=who)

    def delete_remote_branch(self, name: str) -> str | None:
        """Delete the scratch branch `name` from the remote and its remote-tracking ref from the local clone.

        The delete is pushed with a lease on the head the branch has just before, so a push racing it is
        refused rather than lost. Idempotent: None when neither existed any more.
        """
        said = [self._delete_remote_ref(self._scratch_ref(name), shown=f"{self.remote}/{name}")]
        tracking = f"refs/remotes/{self.remote}/{name}"
        if self._exec("rev-parse", "--verify", "--quiet", f"{tracking}^{{commit}}").status == 0:
            self._ok("update-ref", "-d", tracking, doing=f"remove the local ref {tracking}")
            said.append(f"removed the local ref {tracking}")
        return "; ".join(s for s in said if s) or None

    def delete_backup_ref(self, backup_ref: str) -> str | None:
        """Delete the backup ref a force-push of a scratch branch saved (never one of a deployable branch)."""
        if not backup_ref.startswith(f"refs/rollback-backup/{SCRATCH_BRANCHES}") or not _valid_ref_name(backup_ref):
            raise BadRequest(
                f"'{backup_ref}' is not the backup ref of a scratch branch: backups of deployable branches are kept",
                hint="remove it by hand if it really must go",
            )
        return self._delete_remote_ref(backup_ref, shown=f"{self.remote} {backup_ref}") or None

    def _delete_remote_ref(self, ref: str, *, shown: str) -> str:
        existing = self._ls_remote(ref)
        if existing is None:
            return ""
        self._push(f":{ref}", expect=existing, action=f"delete {ref}")
        left = self._ls_remote(ref)
        if left is not None:
            raise GitError(
                f"{shown} is still there (at {left[:7]}) after deleting it",
                hint=f"delete it by hand: git push {self.remote} :{ref}",
            )
        return f"deleted {shown} (it was at {existing[:7]})"

    def _scratch_ref(self, name: str) -> str:
        if not (name.startswith(SCRATCH_BRANCHES) and _valid_ref_name(name)):
            raise BadRequest(
                f"'{name}' is not a scratch branch name: only branches under {SCRATCH_BRANCHES} are created or"
                " deleted by the bot",
                hint="a deployable branch is only ever moved by a rollback, with a lease",
            )
        return f"refs/heads/{name}"

    # --- steps --------------------------------------------------------------------------------------

    def _save_backup(self, sha: str, backup_ref: str) -> None:
        existing = self._ls_remote(backup_ref)
        if existing is not None and existing != sha:
            raise GitError(
                f"{backup_ref} already exists on {self.remote} and points at {existing[:7]}, not {sha[:7]}; "
                f"{self.branch} was not moved",
                hint="use a new backup ref name: an existing backup is never overwritten",
            )
        if existing is None:
            try:
                # An empty lease means "must not exist yet": a backup that appeared meanwhile is kept.
                self._push(f"{sha}:{backup_ref}", expect="", action=f"save the backup ref {backup_ref}")
            except PushRejected as exc:
                raise PushRejected(f"{exc.message}; {self.branch} was not moved", hint=exc.hint) from None
        landed = self._ls_remote(backup_ref)
        if landed != sha:
            raise GitError(
                f"the backup ref {backup_ref} is not on {self.remote} after pushing it "
                f"(found {landed[:7] if landed else 'nothing'}); {self.branch} was not moved",
                hint="check the remote accepts refs outside refs/heads, then retry",
            )

    def _push(self, refspec: str, *, expect: str, action: str) -> None:
        dest = refspec.split(":", 1)[1]
        lease = f"--force-with-lease={dest}:{expect}"
        out = self._exec("push", *_PUSH_OPTS, lease, "--", self.remote, refspec, net=True)
        if out.status == 0:
            return
        rejected = [ln.split("\t") for ln in out.stdout.splitlines() if ln.startswith("!")]
        said = [redact(ln[7:].strip()) for ln in out.stderr.splitlines() if ln.startswith("remote:")]
        said = [s for s in said if s]
        if not rejected and not said:
            raise GitError(
                f"could not push to {self.remote} to {action}: {out.reason}",
                hint=f"the remote may be unreachable; fetch {self.remote}/{self.branch} to see whether "
                "anything changed before retrying",
            )
        why = rejected[0][2].strip() if rejected and len(rejected[0]) > 2 else "rejected"
        text = f"{self.remote} refused to {action}: {why}"
        if said:
            text += f"; the remote said: {' / '.join(said)}"
        raise PushRejected(text, hint=self._rejection_hint(why + " " + " ".join(said), expect=expect))

    def _rejection_hint(self, why: str, *, expect: str) -> str:
        low = why.lower()
        if "stale info" in low or "fetch first" in low:
            if not expect:
                return "that backup ref was created meanwhile; choose a new backup ref name"
            return (
                f"someone pushed to {self.branch} after the plan was made ({expect[:7]} is no longer its "
                "head); nothing was changed: make a new plan from the current head"
            )
        if "protected" in low:
            return f"{self.branch} is protected on {self.remote}: allow the bot to push, or deploy by hand"
        if "hook" in low:
            return "a hook on the remote refused it; its message says why: fix that, or ask a repository admin"
        return "nothing was changed on the remote; read the reason, fix it, then retry"

    def _confirm_head(self, expected: str) -> None:
        head = self.fetch()
        if head.sha != expected:
            raise GitError(
                f"after the push, {self.remote}/{self.branch} is at {head.short}, not at {expected[:7]}",
                hint="someone may have pushed at the same time; check the branch before doing anything else",
            )

    def _ls_remote(self, ref: str) -> str | None:
        out = self._exec("ls-remote", "--", self.remote, ref, net=True)
        if out.status != 0:
            raise self._remote_error(out, doing="reach")
        return _ls_remote_value(out.stdout, ref)

    # --- lookups ------------------------------------------------------------------------------------

    @property
    def _tracking_ref(self) -> str:
        return f"refs/remotes/{self.remote}/{self.branch}"

    @property
    def _repo_hint(self) -> str:
        return f"fetch {self.remote}/{self.branch} and check the repository at {redact(self._source)}"

    def _full_sha(self, ref: str) -> str:
        text = ref.strip()
        if text in self._known:
            return text
        if text in (self.branch, f"{self.remote}/{self.branch}"):
            # "the branch" means the remote's, as last fetched: a bare clone's own refs/heads are stale.
            return self._rev_parse(self._tracking_ref, shown=text)
        if not _looks_like_ref(text):
            shown = text if len(text) <= 60 else text[:59] + "…"
            raise GitError(
                f"'{shown}' is not a commit SHA or a ref name",
                hint="give a commit SHA (at least 4 hex characters), e.g. `to 3f2a9c1`",
            )
        return self._rev_parse(text, shown=text)

    def _rev_parse(self, ref: str, *, shown: str) -> str:
        out = self._exec("rev-parse", "--verify", f"{ref}^{{commit}}")
        if out.status == 0:
            return out.stdout.strip()
        if "ambiguous" in out.stderr:
            raise GitError(f"'{shown}' matches several commits", hint="give more characters of the SHA")
        raise GitError(
            f"commit '{shown}' not found in {self.remote}/{self.branch}'s repository",
            hint=f"check the SHA (`git log {self.remote}/{self.branch}` lists recent commits); "
            "a commit pushed just now appears after the next fetch",
        )

    def _commit(self, sha: str) -> Commit:
        known = self._known.get(sha)
        if known is not None:
            return known
        line = self._ok(*_LOG, "--no-walk", sha, "--", doing=f"read commit {sha[:7]}")
        commit = _parse_commit(line.splitlines()[0])
        if len(self._known) >= _KNOWN_MAX:  # a serving bot's lifetime of plans: start again, never grow on
            self._known.clear()
        self._known[commit.sha] = commit
        return commit

    def _remote_error(self, out: _Outcome, *, doing: str) -> GitError:
        if "couldn't find remote ref" in out.stderr:
            return self._missing_branch_error()
        return GitError(
            f"could not {doing} {self.remote} ({self.branch}): {out.reason}",
            hint=f"check that {self.remote} is reachable from this machine and its credentials are valid",
        )

    def _missing_branch_error(self) -> GitError:
        return GitError(
            f"branch '{self.branch}' does not exist on remote '{self.remote}'",
            hint=f"check `branch` in rollback.toml; `git ls-remote --heads {self.remote}` lists its branches",
        )

    # --- running git --------------------------------------------------------------------------------

    def _ok(self, *args: str, doing: str, env: dict[str, str] | None = None) -> str:
        out = self._exec(*args, env=env)
        if out.status != 0:
            raise GitError(f"could not {doing}: {out.reason}", hint=self._repo_hint)
        return out.stdout.strip()

    def _exec(
        self, *args: str, net: bool = False, env: dict[str, str] | None = None, verbatim: bool = False
    ) -> _Outcome:
        return self._run(self._open().git, *args, net=net, env=env, verbatim=verbatim)

    def _run(
        self,
        runner: git.Git,
        *args: str,
        net: bool = False,
        env: dict[str, str] | None = None,
        verbatim: bool = False,
    ) -> _Outcome:
        """Run git; `net` bounds the time (a hung remote must not hang the rollback)."""
        full_env = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never", **(env or {})}
        if net and self._ssh_command:
            full_env["GIT_SSH_COMMAND"] = self._ssh_command
        try:
            status, raw, err = runner.execute(
                [*_nice(exe := git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"), exe, *args],
                with_extended_output=True,
                with_exceptions=False,
                stdout_as_string=False,
                strip_newline_in_stdout=not verbatim,
                kill_after_timeout=self._timeout if net else None,
                env=full_env,
            )
        except git.GitCommandNotFound:
            raise GitError("git is not installed on this machine", hint="install git, then retry") from None
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw or "")
        return _Outcome(status=status, stdout=text, stderr=err or "")

    def _open(self) -> git.Repo:
        if self._repo is not None:
            return self._repo
        repo = self._existing_repo()
        if repo is None:
            repo = self._bare_clone()
        self._repo = repo
        self._ssh_command = self._batch_ssh(repo.git)
        return repo

    def _existing_repo(self) -> git.Repo | None:
        if _URL_LIKE.match(self._source):
            return None
        path = Path(self._source).expanduser()
        if not path.is_dir():
            return None
        try:
            repo = git.Repo(path)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise GitError(
                f"{path} is not a git repository", hint="set `repo` in rollback.toml to a clone or a URL"
            ) from None
        has_remote = any(r.name == self.remote for r in repo.remotes)
        if repo.bare and not has_remote:
            return None  # a bare repository without our remote is the remote itself: clone it
        if not has_remote:
            raise GitError(
                f"the clone at {path} has no remote named '{self.remote}'",
                hint=f"add it (`git -C {path} remote add {self.remote} URL`) or fix `remote` in the config",
            )
        return repo

    def _bare_clone(self) -> git.Repo:
        source = self._source
        if not _URL_LIKE.match(source) and Path(source).expanduser().exists():
            source = str(Path(source).expanduser().resolve())  # git runs in work_dir, not our cwd
        self._work_dir.mkdir(parents=True, exist_ok=True)
        dest = (self._work_dir / _clone_dir_name(source)).resolve()
        if not dest.exists():
            partial = dest.with_name(f"{dest.name}.partial-{os.getpid()}")
            shutil.rmtree(partial, ignore_errors=True)
            runner = git.Git(str(self._work_dir))
            self._ssh_command = self._batch_ssh(runner)
            out = self._run(runner, "clone", "--bare", "-o", self.remote, "--", source, str(partial), net=True)
            if out.status != 0:
                shutil.rmtree(partial, ignore_errors=True)
                raise GitError(
                    f"could not clone {redact(source)}: {out.reason}",
                    hint="check `repo` in rollback.toml, and that this machine can reach it and log in",
                )
            try:
                partial.rename(dest)
            except OSError:
                shutil.rmtree(partial, ignore_errors=True)  # another process finished the same clone first
        try:
            repo = git.Repo(dest)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise GitError(
                f"{dest} exists but is not a git repository", hint="remove it; the next run clones again"
            ) from None
        urls = {r.name: r.url for r in repo.remotes}
        if urls.get(self.remote) != source:
            verb = "set-url" if self.remote in urls else "add"
            out = self._run(repo.git, "remote", verb, "--", self.remote, source)
            if out.status != 0:
                raise GitError(
                    f"could not point remote '{self.remote}' at {redact(source)}: {out.reason}",
                    hint=f"remove {dest}; the next run clones again",
                )
        return repo

    def _batch_ssh(self, runner: git.Git) -> str | None:
        """`ssh -o BatchMode=yes` unless the user chose an ssh command: ssh must fail, not ask."""
        if os.environ.get("GIT_SSH_COMMAND") or os.environ.get("GIT_SSH"):
            return None
        configured = self._run(runner, "config", "--get", "core.sshCommand")
        return None if configured.status == 0 and configured.stdout.strip() else "ssh -o BatchMode=yes"


def _parse_commit(line: str) -> Commit:
    sha, subject, author, when = [*line.split(_SEP), "", "", ""][:4]
    committed_at = datetime.fromisoformat(when) if when else None
    return Commit(sha=sha, subject=subject, author=author, committed_at=committed_at)


def _ls_remote_value(text: str, ref: str) -> str | None:
    # ls-remote matches patterns by their tail, so "release" would also list refs/heads/x/release.
    for line in text.splitlines():
        sha, _, name = line.partition("\t")
        if name.strip() == ref:
            return sha.strip()
    return None


def _nice(executable: str) -> tuple[str, ...]:
    """`nice -n 10`, so that git (a fetch per plan, a burst of plans) never competes with Slack's acks.

    Only when both are on PATH: a missing git must still be reported as git missing, not as nice failing.
    """
    if shutil.which("nice") and shutil.which(executable):
        return ("nice", "-n", str(TOOL_NICENESS))
    return ()
