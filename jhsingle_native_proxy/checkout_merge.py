"""Updating a clone without losing the user's work: save it, set it aside, merge, put it back.

`checkout` decides whether a folder is cloned, updated or switched to another branch; this module
holds the part where the user's files are at stake, so that those rules (listed in `checkout`'s
docstring) can be read and reviewed in one place:

- `recover_interrupted_run` first repairs what a checkout killed halfway left behind: a stale
  index.lock, a merge of ours in progress, files still under their set-aside names;
- `save_local_changes` commits the user's changes to tracked files;
- `find_collisions` and `set_aside` move untracked (or ignored) files out of the way of files
  upstream adds, and put them back afterwards, upstream's copy beside them as `NAME.upstream`;
- `integrate` merges upstream into the branch with `-X ours` and settles the conflicts that
  option cannot (the user's side wins), or takes the whole merge back.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import logging
import os
import time
from collections.abc import Iterator

from .git_session import Fail, Session

log = logging.getLogger("jhsingle_native_proxy")

# Marks the commits and merges this module makes, so an interrupted merge can be told apart
# from one the user left half-done.
MARK = "(jhsingle-native-proxy)"
# An index.lock this old is left over from a crash, whatever processes run.
STALE_LOCK_SECONDS = 600
UPSTREAM_SUFFIX = ".upstream"
ASIDE_SUFFIX = ".jhsnp-aside"
# Records what was moved aside, so a crash in the middle of a merge cannot strand a user's file
# under its temporary name: the next checkout puts it back first.
ASIDE_JOURNAL = "jhsnp-aside.json"
MAX_FILE_NOTES = 20


def recover_interrupted_run(s: Session, folder: str, gitdir: str, notes: list[str]) -> None:
    """Before an update: undo what an earlier checkout, killed halfway, left in the folder."""
    _check_index_lock(folder, gitdir)
    _abort_own_interrupted_merge(s, folder, gitdir, notes)
    _put_back_from_journal(folder, gitdir, notes)


def _check_index_lock(folder: str, gitdir: str) -> None:
    """Remove an index.lock left by a crash; refuse one that a running git may hold."""
    lock = os.path.join(gitdir, "index.lock")
    try:
        age = time.time() - os.stat(lock).st_mtime
    except FileNotFoundError:
        return
    if age < STALE_LOCK_SECONDS and _git_running_in(folder, gitdir):
        raise Fail(
            "another git operation is running in the folder (.git/index.lock exists); "
            "try again when it has finished"
        )
    log.warning("Removing a stale %s (%.0f seconds old, no git running there)", lock, age)
    with contextlib.suppress(FileNotFoundError):
        os.remove(lock)


def _git_running_in(folder: str, gitdir: str) -> bool:
    """Whether a git process works in the folder (Linux /proc; elsewhere, assume one does)."""
    if not os.path.isdir("/proc/self"):
        return True
    places = [os.path.realpath(folder), os.path.realpath(gitdir)]
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                if not f.read().startswith("git"):
                    continue
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if any(cwd == p or cwd.startswith(p + os.sep) for p in places):
            return True
    return False


def _abort_own_interrupted_merge(s: Session, folder: str, gitdir: str, notes: list[str]) -> None:
    """A merge of ours cut short (crash, kill) is taken back; the user's work is all in HEAD."""
    if not os.path.exists(os.path.join(gitdir, "MERGE_HEAD")):
        return
    try:
        with open(os.path.join(gitdir, "MERGE_MSG"), encoding="utf-8", errors="replace") as f:
            ours = MARK in f.readline()
    except OSError:
        ours = False
    if ours:
        log.warning("Aborting an interrupted merge of upstream changes in %s", folder)
        s.git(folder, "merge", "--abort")
        notes.append("An interrupted update from an earlier start was undone and done again.")


@contextlib.contextmanager
def set_aside(folder: str, gitdir: str, paths: list[str], notes: list[str]) -> Iterator[None]:
    """Move untracked paths out of git's way for the duration of the block, then put them back."""
    if not paths:
        yield
        return
    moves = [(path, _free_name(folder, path + ASIDE_SUFFIX)) for path in paths]
    journal = os.path.join(gitdir, ASIDE_JOURNAL)
    with open(journal, "w", encoding="utf-8") as f:
        json.dump(moves, f)
        f.flush()
        os.fsync(f.fileno())
    for path, aside in moves:
        os.rename(os.path.join(folder, path), os.path.join(folder, aside))
    try:
        yield
    finally:
        _put_back(folder, moves, notes)
        os.remove(journal)


def _put_back_from_journal(folder: str, gitdir: str, notes: list[str]) -> None:
    journal = os.path.join(gitdir, ASIDE_JOURNAL)
    try:
        with open(journal, encoding="utf-8") as f:
            moves = [(str(a), str(b)) for a, b in json.load(f)]
    except FileNotFoundError:
        return
    except (OSError, ValueError, TypeError):
        log.warning("Ignoring an unreadable %s", journal)
        moves = []
    _put_back(folder, moves, notes)
    os.remove(journal)


def _put_back(folder: str, moves: list[tuple[str, str]], notes: list[str]) -> None:
    """Return the user's files to their paths; upstream's copy (if any) goes to `PATH.upstream`.

    The upstream copy gets a suffix after the whole name (`app.py.upstream`, not
    `app.upstream.py`), as dpkg's `.dpkg-dist` and rpm's `.rpmnew` do with a package's new
    version of a file the administrator changed: no program picks it up by its extension, so an
    extra `.py` cannot become a Streamlit or Dash page, a Voila notebook or an imported module,
    and the app keeps running exactly the user's files. The name still sorts right next to the
    user's file, and `diff app.py app.py.upstream` shows what upstream changed. An existing name
    is never overwritten: `.upstream.2`, `.upstream.3`, ... are used instead.
    """
    for path, aside in moves:
        original, kept = os.path.join(folder, path), os.path.join(folder, aside)
        if not os.path.lexists(kept):
            continue
        if os.path.lexists(original):
            same = (
                os.path.isfile(original)
                and not os.path.islink(original)
                and os.path.isfile(kept)
                and not os.path.islink(kept)
                and filecmp.cmp(original, kept, shallow=False)
            )
            if same:
                os.replace(kept, original)
                continue
            beside = _free_name(folder, path + UPSTREAM_SUFFIX)
            os.rename(original, os.path.join(folder, beside))
            notes.append(f"Kept your {path}; the upstream version is in {beside}")
        os.rename(kept, original)


def _free_name(folder: str, path: str) -> str:
    if not os.path.lexists(os.path.join(folder, path)):
        return path
    n = 2
    while os.path.lexists(os.path.join(folder, f"{path}.{n}")):
        n += 1
    return f"{path}.{n}"


def find_collisions(s: Session, folder: str, head: str, target: str) -> list[str]:
    """Untracked (or ignored) paths that would stand where `target` adds files.

    Git refuses to overwrite untracked files, but silently overwrites ignored ones; both are the
    user's, so both are set aside. A path counts when it exists itself, or when one of its parent
    folders is an untracked file or symlink where upstream needs a folder.
    """
    out = s.git(
        folder, "diff", "--name-only", "-z", "--no-renames", "--diff-filter=A", head, target
    ).out
    found: set[str] = set()
    for path in filter(None, out.split("\0")):
        parts = path.split("/")
        blocked = False
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            full = os.path.join(folder, parent)
            if not os.path.lexists(full):
                break
            if os.path.islink(full) or not os.path.isdir(full):
                if s.git(folder, "cat-file", "-e", f"{head}:{parent}", check=False).status:
                    found.add(parent)
                blocked = True
                break
        if not blocked and os.path.lexists(os.path.join(folder, path)):
            found.add(path)
    return sorted(found)


def save_local_changes(s: Session, folder: str, message: str) -> str | None:
    """Commit every change to tracked files (and whatever the user staged); the new commit id."""
    s.git(folder, "add", "--update")
    if s.git(folder, "diff", "--cached", "--quiet", check=False).status == 0:
        return None
    s.step("Saving your local changes in a commit …")
    body = (
        "Committed automatically before updating from upstream, so that no local change could be "
        "overwritten. The files in the folder were not changed by this commit."
    )
    s.git(folder, "commit", "--quiet", "--no-verify", "-m", f"{message} {MARK}", "-m", body)
    return s.git(folder, "rev-parse", "HEAD").out.strip()


def _name_status(s: Session, folder: str, old: str, new: str, renames: bool) -> dict[str, str]:
    """Path -> status letter (A, M, D, R, ...); a renamed path maps to "R<new path>"."""
    find = "--find-renames" if renames else "--no-renames"
    fields = s.git(folder, "diff", "--name-status", "-z", find, old, new).out.split("\0")
    changes: dict[str, str] = {}
    i = 0
    while i + 1 < len(fields):
        letter = fields[i][:1]
        if letter in ("R", "C"):
            changes[fields[i + 1]] = letter + fields[i + 2]
            i += 3
        else:
            changes[fields[i + 1]] = letter
            i += 2
    return changes


def _ensure_merge_base(s: Session, folder: str, branch: str, head: str, upstream: str) -> str:
    """The merge base of HEAD and upstream, fetching more history of a shallow clone if needed."""
    refspec = f"+refs/heads/{branch}:refs/remotes/origin/{branch}"
    for deeper in ("--deepen=100", "--unshallow"):
        base = s.git(folder, "merge-base", head, upstream, check=False)
        if base.status == 0:
            return base.out.strip()
        if s.git(folder, "rev-parse", "--is-shallow-repository").out.strip() != "true":
            break
        s.step("Fetching more history to find where your copy and upstream diverged …")
        s.git_progress(folder, "fetch", "--progress", deeper, "--", s.url, refspec)
    base = s.git(folder, "merge-base", head, upstream, check=False)
    if base.status == 0:
        return base.out.strip()
    raise Fail(
        "upstream's history has no commit in common with the folder's (was it rewritten?); "
        "nothing was changed"
    )


def integrate(s: Session, folder: str, gitdir: str, branch: str, notes: list[str]) -> str:
    """Merge origin/<branch> into the checked-out branch, keeping every local change."""
    upstream = s.git(folder, "rev-parse", f"refs/remotes/origin/{branch}").out.strip()
    head = s.git(folder, "rev-parse", "HEAD").out.strip()
    if s.is_ancestor(folder, upstream, head):
        return "up to date"
    base = _ensure_merge_base(s, folder, branch, head, upstream)
    saved = save_local_changes(s, folder, f"Save local changes on {branch}")
    if saved:
        notes.append(f"Your changes to tracked files were committed on {branch} ({saved[:10]}).")
        head = saved
    _note_both_changed(s, folder, base, head, upstream, notes)
    collisions = find_collisions(s, folder, head, upstream)
    s.step(f"Merging upstream changes of {branch} …")
    with set_aside(folder, gitdir, collisions, notes):
        if s.is_ancestor(folder, head, upstream):
            s.git(folder, "merge", "--ff-only", "--quiet", upstream)
        else:
            _merge_keeping_ours(s, folder, gitdir, branch, upstream)
    return "updated"


def _note_both_changed(
    s: Session, folder: str, base: str, head: str, upstream: str, notes: list[str]
) -> None:
    ours = _name_status(s, folder, base, head, renames=False)
    theirs = _name_status(s, folder, base, upstream, renames=True)
    both = sorted(ours.keys() & theirs.keys())
    for path in both[:MAX_FILE_NOTES]:
        mine, upstreams = ours[path], theirs[path]
        if mine == "D" and upstreams == "D":
            continue
        if upstreams.startswith("R") and mine != "D":
            notes.append(
                f"{path}: renamed upstream to {upstreams[1:]}; your changes went along with it"
            )
        elif upstreams.startswith("R"):
            notes.append(f"{path}: renamed upstream, but you deleted it; it stays deleted")
        elif mine == "D":
            notes.append(f"{path}: changed upstream, but you deleted it; it stays deleted")
        elif upstreams == "D":
            notes.append(f"{path}: deleted upstream, but you changed it; your version is kept")
        else:
            notes.append(
                f"{path}: changed by you and upstream; upstream's changes were merged in, "
                "and your version was kept wherever both changed the same lines"
            )
    if len(both) > MAX_FILE_NOTES:
        notes.append(f"... and {len(both) - MAX_FILE_NOTES} more files changed on both sides")


def _merge_keeping_ours(s: Session, folder: str, gitdir: str, branch: str, upstream: str) -> None:
    message = f"Merge upstream changes of {branch} {MARK}"
    result = s.git(folder, "merge", "--no-edit", "-X", "ours", "-m", message, upstream, check=False)
    if result.status == 0:
        return
    if not os.path.exists(os.path.join(gitdir, "MERGE_HEAD")):
        # Refused before it began (git says why); nothing in the folder changed.
        raise Fail(s.explain(("merge",), result.err or result.out))
    try:
        unmerged: dict[str, set[str]] = {}
        out = s.git(folder, "ls-files", "--unmerged", "-z").out
        for entry in filter(None, out.split("\0")):
            info, _, path = entry.partition("\t")
            unmerged.setdefault(path, set()).add(info.split()[2])
        for path, stages in sorted(unmerged.items()):
            if "2" in stages:  # the user's side has the file: theirs changed or deleted it
                s.git(folder, "checkout", "--ours", "--", path)
                s.git(folder, "add", "--", path)
            else:  # the user deleted it: upstream's changed copy is not brought back
                s.git(folder, "rm", "--quiet", "--force", "--ignore-unmatch", "--", path)
        left = s.git(folder, "ls-files", "--unmerged").out.strip()
        if left:
            raise Fail("the merge left conflicts that could not be settled")
        s.git(folder, "commit", "--quiet", "--no-verify", "--no-edit")
    except Fail as e:
        # All of the user's work is committed or set aside: aborting only undoes the merge.
        s.git(folder, "merge", "--abort", check=False)
        raise Fail(f"could not merge upstream changes ({e}); nothing was changed") from None
