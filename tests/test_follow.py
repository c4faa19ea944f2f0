"""Publish mode (--repo URL --follow): real git repositories over file://, the real CLI, a real
app (tests/apps/published_app.py) committed to them, and a load of concurrent clients across
every switch. A revision's app answers with its version.txt, so a response says who served it.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import sys
import threading
import time
from pathlib import Path

import aiohttp
import loadgen
import pytest
from test_checkout import git

from conftest import APPS, cli_error, console_form, request, run_cli, wait_for

PUBLISHED_APP = (APPS / "published_app.py").read_text()
CLIENTS = 20


class Upstream:
    """The published repository: commits land on `main` as pushes would."""

    def __init__(self, path: Path):
        self.path = path
        path.mkdir()
        git(path, "init", "--quiet", "--initial-branch=main")
        self.push("v1")

    @property
    def url(self) -> str:
        return self.path.as_uri()

    def push(self, version: str, *, crash: bool = False, hang: bool = False) -> str:
        (self.path / "app.py").write_text(PUBLISHED_APP)
        (self.path / "version.txt").write_text(version + "\n")
        for name, wanted in (("crash", crash), ("hang", hang)):
            if wanted:
                (self.path / name).write_text("")
            elif (self.path / name).exists():
                (self.path / name).unlink()
        git(self.path, "add", "--all")
        git(self.path, "commit", "--quiet", "-m", f"version {version}")
        return git(self.path, "rev-parse", "HEAD").strip()

    def force_push(self, version: str) -> str:
        """History rewritten: the tip replaced by a commit that is not its descendant."""
        git(self.path, "reset", "--quiet", "--hard", "HEAD~1")
        return self.push(version)


class Load:
    """CLIENTS threads, each requesting the app in a loop; counts answers by version, failures."""

    def __init__(self, port: int, path: str):
        self.port, self.path = port, path
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.versions: dict[str, int] = {}
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def _client(self) -> None:
        while not self.stop.is_set():
            try:
                r = request(self.port, "GET", self.path, timeout=30)
                outcome = r.body.decode().strip() if r.status == 200 else f"HTTP {r.status}"
            except OSError as e:
                outcome = f"error {e!r}"
            with self.lock:
                if outcome.startswith(("HTTP", "error")):
                    self.failures.append(outcome)
                else:
                    self.versions[outcome] = self.versions.get(outcome, 0) + 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        wait_for(lambda: sum(self.versions.values()) >= CLIENTS, what="the load to run")
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    @property
    def served(self) -> int:
        with self.lock:
            return sum(self.versions.values())


def app_processes(proxy) -> list[int]:
    """The published apps running under the proxy: `python app.py PORT`. Not git, nor a child
    forked by the proxy that has not exec'd yet (its command line is still the proxy's, whose
    app command holds `app.py` too)."""
    found = []
    for pid in loadgen.process_tree(proxy.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:2] == [b"app.py"]:
            found.append(pid)
    return found


class Sampler:
    """The most published apps seen at once, sampled from /proc while a switch runs."""

    def __init__(self, proxy):
        self.proxy, self.most, self.most_rss_mib = proxy, 0, 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            apps = app_processes(self.proxy)
            self.most = max(self.most, len(apps))
            with contextlib.suppress(OSError, AssertionError):  # an app that just ended
                self.most_rss_mib = max(self.most_rss_mib, sum(map(loadgen.rss_mib, apps)))
            time.sleep(0.02)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def upstream(tmp_path) -> Upstream:
    return Upstream(tmp_path / "upstream")


def start_published(start_proxy, upstream, tmp_path, *args: str):
    proxy = start_proxy(
        [
            "--repo", upstream.url, "--repobranch", "main",
            "--repofolder", str(tmp_path / "published"),
            "--follow", "--follow-interval", "1", *args,
        ],
        app=[sys.executable, "app.py", "{port}"],
    )  # fmt: skip
    assert proxy.get("").body.decode().strip() == "v1"
    return proxy


def revisions(proxy) -> dict:
    return proxy.get("_jhsnp/revisions.json").json()


def version(proxy) -> str:
    r = proxy.get("", timeout=10)
    return r.body.decode().strip() if r.status == 200 else f"HTTP {r.status}"


def revision(proxy, commit: str) -> dict:
    return next((r for r in revisions(proxy)["revisions"] if r["commit"] == commit), {})


@pytest.mark.parametrize(
    ("more", "named"),
    [
        ([], "--repo"),
        (["--repo", "file:///nowhere", "--destport", "9999"], "--destport"),
        (["--repo", "file:///nowhere", "--unix-socket"], "--unix-socket"),
        (["--repo", "file:///nowhere", "--raw-socket-proxy"], "--raw-socket-proxy"),
    ],
)
def test_follow_refuses_what_it_cannot_do_with_a_usage_error(more, named):
    done = run_cli(["--authtype", "none", "--follow", *more, "--", "python3", "-m", "http.server"])
    message = cli_error(done.stderr, done.returncode)
    assert message.startswith("--follow") and named in message


def test_a_push_goes_live_with_no_failed_request(start_proxy, upstream, tmp_path):
    proxy = start_published(start_proxy, upstream, tmp_path, "--drain-timeout", "5")
    first = revisions(proxy)["live"]
    assert first["subject"] == "version v1" and first["author"] == "Tester"
    with Load(proxy.port, proxy.prefix) as load, Sampler(proxy) as sampler:
        pushed_at = time.monotonic()
        commit = upstream.push("v2")
        wait_for(lambda: version(proxy) == "v2", 30, what="v2 to go live")
        to_live = time.monotonic() - pushed_at
        served_at_switch = load.served
        wait_for(lambda: load.served >= served_at_switch + 200, what="more requests after it")
    assert load.failures == []
    assert load.versions.get("v1") and load.versions.get("v2")
    wait_for(lambda: len(app_processes(proxy)) == 1, 20, what="the old app to be ended")
    assert sampler.most <= 2
    live = revisions(proxy)["live"]
    assert live["commit"] == commit and live["state"] == "live"
    assert revision(proxy, first["commit"])["state"] == "previous"
    assert proxy.log().count("Switched the published app from ") == 1
    loadgen.record(
        "follow",
        push_to_live_s=round(to_live, 2),
        failed_requests=len(load.failures),
        requests_served=sum(load.versions.values()),
        served_by_old=load.versions.get("v1", 0),
        served_by_new=load.versions.get("v2", 0),
        most_apps_during_switch=sampler.most,
        most_apps_rss_mib_during_switch=round(sampler.most_rss_mib, 1),
        apps_rss_mib_after_drain=round(sum(map(loadgen.rss_mib, app_processes(proxy))), 1),
        apps_after_drain=len(app_processes(proxy)),
        proxy_rss_mib=round(loadgen.rss_mib(proxy.pid), 1),
    )
    # A force-push (the tip replaced, not followed) goes live the same way.
    forced = upstream.force_push("v3")
    wait_for(lambda: version(proxy) == "v3", 30, what="the force-pushed v3 to go live")
    assert revisions(proxy)["live"]["commit"] == forced


async def _echo(ws, text: str) -> str:
    await ws.send_str(text)
    msg = await ws.receive(timeout=10)
    return msg.data


def test_open_websocket_stays_until_the_drain_timeout_then_gets_1012(
    start_proxy, upstream, tmp_path
):
    proxy = start_published(start_proxy, upstream, tmp_path, "--drain-timeout", "4")

    async def scenario():
        url = proxy.url("ws").replace("http", "ws")
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as old:
            assert await _echo(old, "a") == "v1:a"
            upstream.push("v2")
            while await asyncio.to_thread(version, proxy) != "v2":
                await asyncio.sleep(0.1)
            # Switched: the open websocket still reaches the old revision, a new one the new.
            assert await _echo(old, "b") == "v1:b"
            async with session.ws_connect(url) as new:
                assert await _echo(new, "c") == "v2:c"
            closed = await old.receive(timeout=30)
            return closed.type, old.close_code

    kind, code = asyncio.run(scenario())
    assert kind == aiohttp.WSMsgType.CLOSE and code == 1012
    wait_for(lambda: len(app_processes(proxy)) == 1, 20, what="the old app to be ended")


@pytest.mark.parametrize("broken", ["crash", "hang"])
def test_a_broken_push_never_goes_live(start_proxy, upstream, tmp_path, broken):
    proxy = start_published(start_proxy, upstream, tmp_path, "--ready-timeout", "3")
    with Load(proxy.port, proxy.prefix) as load:
        commit = upstream.push("v2", **{broken: True})
        wait_for(lambda: revision(proxy, commit).get("state") == "failed", 40, what="the failure")
        served = load.served
        wait_for(lambda: load.served >= served + 100, what="more requests after it")
    assert load.failures == [] and set(load.versions) == {"v1"}
    failed = revision(proxy, commit)
    assert ("exited with status 3" if broken == "crash" else "did not") in failed["reason"]
    assert revisions(proxy)["live"]["subject"] == "version v1"
    wait_for(lambda: len(app_processes(proxy)) == 1, 20, what="the failed app to be ended")
    page = proxy.get("_jhsnp/", headers={"Accept": "text/html"}).body.decode()
    assert commit[:10] in page and "failed" in page
    loadgen.record(f"follow {broken}", failed_requests=len(load.failures), served=load.served)


def test_roll_back_then_a_new_push_follows_again(start_proxy, upstream, tmp_path):
    proxy = start_published(start_proxy, upstream, tmp_path, "--drain-timeout", "2")
    v1 = revisions(proxy)["live"]["commit"]
    upstream.push("v2")
    wait_for(lambda: version(proxy) == "v2", 30, what="v2 to go live")
    form = console_form(proxy)
    refused = proxy.request("POST", "_jhsnp/rollback", body=f"commit={v1}", headers=form["headers"])
    assert refused.status == 403 and version(proxy) == "v2"  # no form token: no roll back
    with Load(proxy.port, proxy.prefix) as load, Sampler(proxy) as sampler:
        r = proxy.request(
            "POST", "_jhsnp/rollback", body=form["body"] + f"&commit={v1}", headers=form["headers"]
        )
        assert r.status == 303
        wait_for(lambda: version(proxy) == "v1", 30, what="the roll back")
        served = load.served
        wait_for(lambda: load.served >= served + 100, what="more requests after it")
    assert load.failures == [] and sampler.most <= 2
    state = revisions(proxy)
    assert state["live"]["commit"] == v1 and state["pinned"]
    loadgen.record("follow rollback", failed_requests=len(load.failures), served=load.served)
    # Pinned: the next poll keeps v1 ...
    checked = state["checked_at"]
    wait_for(lambda: (revisions(proxy)["checked_at"] or 0) > checked + 1, what="two more polls")
    assert version(proxy) == "v1"
    # ... until a new push.
    upstream.push("v3")
    wait_for(lambda: version(proxy) == "v3", 30, what="v3 to go live")
    assert not revisions(proxy)["pinned"]


def test_an_unreachable_remote_keeps_the_live_revision(start_proxy, upstream, tmp_path):
    proxy = start_published(start_proxy, upstream, tmp_path)
    moved = tmp_path / "moved"
    shutil.move(upstream.path, moved)
    wait_for(lambda: revisions(proxy)["error"], 20, what="the error to show")
    assert "Could not look at the branch" in revisions(proxy)["error"]
    assert version(proxy) == "v1"
    shutil.move(moved, upstream.path)
    git(upstream.path, "branch", "-m", "main", "renamed")  # the branch vanished
    wait_for(lambda: "not on the remote" in revisions(proxy)["error"], 20, what="the error")
    assert version(proxy) == "v1"


def test_update_now_needs_the_form_token_and_checks_at_once(start_proxy, upstream, tmp_path):
    proxy = start_published(start_proxy, upstream, tmp_path, "--follow-interval", "0")
    upstream.push("v2")
    form = console_form(proxy)
    refused = proxy.request("POST", "_jhsnp/update", body="", headers=form["headers"])
    assert refused.status == 403
    assert version(proxy) == "v1"  # interval 0: no poll
    r = proxy.request("POST", "_jhsnp/update", **form)
    assert r.status == 303
    wait_for(lambda: version(proxy) == "v2", 30, what="v2 to go live")


def test_the_repos_token_never_reaches_a_command_line_a_file_or_a_page(
    start_proxy, upstream, tmp_path
):
    from test_git_credentials import GitServer, Watch, files_holding

    token = "tok" + secrets.token_hex(16)
    served = tmp_path / "served"
    served.mkdir()
    git(tmp_path, "clone", "--quiet", "--bare", str(upstream.path), str(served / "repo.git"))
    server = GitServer(served, token).start()
    try:
        watch = Watch(token, tmp_path / "published" / "repo.git" / "config")
        server.while_waiting = watch
        proxy = start_proxy(
            [
                "--repo", server.url(), "--repobranch", "main",
                "--repofolder", str(tmp_path / "published"),
                "--follow", "--follow-interval", "1",
            ],
            app=[sys.executable, "app.py", "{port}"],
            env={"JHSNP_REPO_TOKEN": token},
        )  # fmt: skip
        assert version(proxy) == "v1"
        upstream.push("v2")
        git(upstream.path, "push", "--quiet", str(served / "repo.git"), "main")
        wait_for(lambda: version(proxy) == "v2", 30, what="v2 to go live")
        assert server.authenticated() and watch.git_processes_seen > 0
        assert watch.leaks == []
        assert files_holding(tmp_path / "published", token) == []
        shown = proxy.get("_jhsnp/", headers={"Accept": "text/html"}).body.decode()
        for text in (shown, proxy.get("_jhsnp/revisions.json").body.decode(), proxy.log()):
            assert token not in text
    finally:
        server.stop()


def test_a_switch_is_no_activity_and_requests_together_make_one_update(
    start_proxy, upstream, tmp_path
):
    proxy = start_published(start_proxy, upstream, tmp_path, "--follow-interval", "0")
    last_activity = proxy.status()["last_activity"]
    upstream.push("v2")
    v3 = upstream.push("v3")
    form = console_form(proxy)
    for _ in range(3):
        assert proxy.request("POST", "_jhsnp/update", **form).status == 303
    wait_for(lambda: (revisions(proxy)["live"] or {}).get("commit") == v3, 30, what="v3 live")
    wait_for(lambda: proxy.log().count("An update of the published app was asked") == 3)
    assert proxy.status()["last_activity"] == last_activity
    assert proxy.log().count("Switched the published app from ") == 1
    assert [r["subject"] for r in revisions(proxy)["revisions"]] == ["version v3", "version v1"]


def test_a_switch_during_a_drain_ends_that_drain_first(start_proxy, upstream, tmp_path):
    proxy = start_published(start_proxy, upstream, tmp_path, "--drain-timeout", "120")

    async def scenario():
        url = proxy.url("ws").replace("http", "ws")
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as old:
            assert await _echo(old, "a") == "v1:a"
            with Sampler(proxy) as sampler:
                upstream.push("v2")
                while await asyncio.to_thread(version, proxy) != "v2":
                    await asyncio.sleep(0.1)
                assert len(app_processes(proxy)) == 2  # v1 drains: its websocket is open
                upstream.push("v3")
                await old.receive(timeout=30)  # long before the 120 s drain
                while await asyncio.to_thread(version, proxy) != "v3":
                    await asyncio.sleep(0.1)
            return old.close_code, sampler.most

    code, most = asyncio.run(scenario())
    assert code == 1012 and most <= 2
    wait_for(lambda: len(app_processes(proxy)) == 1, 20, what="v2 to be ended")


def test_the_folders_of_the_last_revisions_that_ran_are_kept():
    from jhsingle_native_proxy.deployment import FOLDERS_KEPT, Revision, folders_to_remove
    from jhsingle_native_proxy.revision_git import CommitInfo

    def made(n: int, state: str) -> Revision:
        return Revision(CommitInfo(f"{n:040x}", "", "", 0.0), state=state)

    states = ["starting", "live", "failed", *["previous"] * (FOLDERS_KEPT + 2)]
    revisions = [made(n, state) for n, state in enumerate(states)]
    gone = folders_to_remove(revisions)
    assert [r.state for r in gone] == ["failed", "previous", "previous", "previous"]
    assert gone[1:] == revisions[-3:]


def test_in_a_browser_update_now_brings_the_push_and_the_console_redraws_itself(
    start_proxy, upstream, tmp_path
):
    from playwright.sync_api import expect

    from browser import chromium_page, screenshot

    proxy = start_published(start_proxy, upstream, tmp_path, "--follow-interval", "0")
    with chromium_page() as page:
        page.goto(proxy.url("_jhsnp/"))
        live = page.locator("#live-revision")
        expect(live).to_contain_text("version v1")
        commit = upstream.push("v2")
        page.get_by_role("button", name="Update now").click()
        # The click's answer is the page again, drawn before the switch; the page's script
        # draws it again once the revisions change.
        expect(live).to_contain_text(commit[:10], timeout=30000)
        expect(live).to_contain_text("version v2")
        expect(page.locator("#revisions")).to_contain_text("previous")
        expect(page.get_by_role("button", name="Roll back")).to_have_count(1)
        screenshot(page, "follow-console")
    assert version(proxy) == "v2"


def test_a_request_under_way_finishes_on_the_old_revision(start_proxy, upstream, tmp_path):
    proxy = start_published(start_proxy, upstream, tmp_path)
    answers: list[tuple[int, str]] = []

    def slow() -> None:
        r = proxy.get("slow?s=4", timeout=30)
        answers.append((r.status, r.body.decode()))

    under_way = threading.Thread(target=slow)
    under_way.start()
    try:
        wait_for(lambda: "app got /slow?s=4" in proxy.log(), what="the request to be under way")
        upstream.push("v2")
        wait_for(lambda: version(proxy) == "v2", 30, what="v2 to go live")
        assert len(app_processes(proxy)) == 2  # the old one waits for its request
    finally:
        under_way.join(30)
    assert answers == [(200, "v1")]
    wait_for(lambda: len(app_processes(proxy)) == 1, 20, what="the old app to be ended")


def test_a_folder_not_checked_out_whole_by_this_run_is_checked_out_again(
    start_proxy, upstream, tmp_path
):
    """A revision's folder left by a `worktree add` cut short (its deadline, a crash) or by a
    previous run whose app wrote in it is not the commit: it is made again, never reused."""
    proxy = start_published(start_proxy, upstream, tmp_path)
    commit = revisions(proxy)["live"]["commit"]
    assert proxy.stop() == 0
    folder = tmp_path / "published" / "revisions" / commit
    (folder / "version.txt").write_text("not the commit\n")
    (folder / "app.py").unlink()  # half a tree
    again = start_published(start_proxy, upstream, tmp_path)  # asserts it serves v1
    assert revisions(again)["live"]["commit"] == commit
    assert (folder / "app.py").read_text() == PUBLISHED_APP


def test_a_host_sending_refs_without_end_is_an_error_not_the_proxys_memory(
    start_proxy, upstream, tmp_path
):
    """`git ls-remote URL refs/heads/main` prints every ref ending in /refs/heads/main: a host
    may send any number. Past a bound it is an error, and the live revision keeps serving."""
    proxy = start_published(start_proxy, upstream, tmp_path)
    tip = git(upstream.path, "rev-parse", "HEAD").strip()
    refs = "".join(f"{tip} refs/pad/{n:06d}/refs/heads/main\n" for n in range(20000))
    with open(upstream.path / ".git" / "packed-refs", "a") as packed:
        packed.write(refs)  # about 1.3 MB of ls-remote output
    wait_for(lambda: "wrote more than" in revisions(proxy)["error"], 20, what="the error")
    assert version(proxy) == "v1"


def test_the_live_revision_is_remembered_after_any_number_of_failed_pushes():
    from jhsingle_native_proxy.deployment import REVISIONS_LISTED, Revision, revisions_remembered
    from jhsingle_native_proxy.revision_git import CommitInfo

    def made(n: int, state: str, on_disk: bool) -> Revision:
        return Revision(CommitInfo(f"{n:040x}", "", "", 0.0), state=state, on_disk=on_disk)

    failed = [made(n, "failed", False) for n in range(REVISIONS_LISTED * 3)]
    live, previous = made(1000, "live", True), made(1001, "previous", True)
    gone = made(1002, "previous", False)
    kept = revisions_remembered([*failed, live, previous, gone])
    assert kept == [*failed[: REVISIONS_LISTED * 2], live, previous]


def test_a_restart_removes_the_folders_of_the_previous_run(start_proxy, upstream, tmp_path):
    """The revisions a previous run kept are no one's to roll back to: a restart removes them
    (else each restart of the server would leave a few more trees on the disk)."""
    proxy = start_published(start_proxy, upstream, tmp_path)
    upstream.push("v2")
    wait_for(lambda: version(proxy) == "v2", 30, what="v2 to go live")
    trees = tmp_path / "published" / "revisions"
    assert len(list(trees.iterdir())) == 2
    assert proxy.stop() == 0
    again = start_proxy(
        [
            "--repo", upstream.url, "--repobranch", "main",
            "--repofolder", str(tmp_path / "published"), "--follow",
        ],
        app=[sys.executable, "app.py", "{port}"],
    )  # fmt: skip
    live = revisions(again)["live"]["commit"]
    assert [p.name for p in trees.iterdir()] == [live]
    worktrees = git(tmp_path / "published" / "repo.git", "worktree", "list", "--porcelain")
    assert worktrees.count("worktree ") == 2  # the bare repository and the live revision


def test_git_does_not_outlive_a_proxy_killed_outright(start_proxy, upstream, tmp_path):
    """SIGKILL to the proxy while `git ls-remote` waits on a host that never answers (here a
    FIFO for its refs): git gets SIGKILL too, instead of waiting for ever."""
    import os
    import signal

    proxy = start_published(start_proxy, upstream, tmp_path)
    packed = upstream.path / ".git" / "packed-refs"
    if packed.exists():
        packed.unlink()
    os.mkfifo(packed)

    def ls_remotes() -> list[int]:
        return [
            pid
            for pid in loadgen.process_tree(proxy.pid)
            if b"ls-remote" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ]

    waiting = wait_for(ls_remotes, 10, what="git ls-remote to wait on the host")
    helpers = loadgen.process_tree(waiting[0])
    proxy.process.kill()
    proxy.process.wait(10)
    try:
        wait_for(lambda: not Path(f"/proc/{waiting[0]}").exists(), 10, what="git to end")
    finally:
        for pid in [*waiting, *helpers]:  # upload-pack, blocked on the FIFO, is git's child
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        packed.unlink()


def test_a_second_proxy_on_the_same_folder_is_refused_and_touches_nothing(
    start_proxy, upstream, tmp_path
):
    """Named servers publishing one repository get one default --repofolder: the second would
    fetch into the first's ref and remove its folders. It fails to start instead, saying why."""
    proxy = start_published(start_proxy, upstream, tmp_path)
    live = revisions(proxy)["live"]["commit"]
    folder = tmp_path / "published" / "revisions" / live
    second = start_proxy(
        [
            "--repo", upstream.url, "--repobranch", "main",
            "--repofolder", str(tmp_path / "published"), "--follow",
        ],
        app=[sys.executable, "app.py", "{port}"],
        wait="listening",
    )  # fmt: skip
    wait_for(lambda: second.status().get("state") == "failed", 20, what="the refusal")
    assert "another proxy publishes from" in "\n".join(second.status()["lines"])
    assert (folder / "app.py").exists() and version(proxy) == "v1"
