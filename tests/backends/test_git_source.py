"""git_source.checkout against a real `git daemon` on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from launch_tui.backends.git_source import checkout
from launch_tui.core.errors import BuildError
from tests.git_daemon import GitDaemon, commit_files, git, git_daemon


@dataclass
class Served:
    daemon: GitDaemon
    url: str
    first: str  # tagged v1
    head: str  # main
    feature: str  # branch "feature"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[GitDaemon]:
    with git_daemon(tmp_path / "served") as d:
        yield d


@pytest.fixture
def served(daemon: GitDaemon) -> Served:
    work = daemon.new_repo("proj.git")
    first = commit_files(work, {"train.py": "print('v1')\n"}, "first")
    git(work, "tag", "-a", "v1", "-m", "release 1")  # annotated: must peel to the commit
    head = commit_files(work, {"train.py": "print('v2')\n"}, "second")
    git(work, "checkout", "-q", "-b", "feature")
    feature = commit_files(work, {"feature.txt": "on a branch\n"}, "feature")
    git(work, "checkout", "-q", "main")
    daemon.publish(work)
    return Served(daemon, daemon.url("proj.git"), first, head, feature)


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, line: str) -> None:
        self.lines.append(line)


async def test_default_ref_is_remote_head(served: Served, tmp_path: Path) -> None:
    log = Log()
    sha = await checkout(served.url, None, tmp_path / "co", log)
    assert sha == served.head
    assert (tmp_path / "co" / "train.py").read_text() == "print('v2')\n"
    assert log.lines[0] == f"git: cloning {served.url}"
    assert log.lines[-1] == f"git: checked out {served.head}"


async def test_branch(served: Served, tmp_path: Path) -> None:
    sha = await checkout(served.url, "feature", tmp_path / "co")
    assert sha == served.feature
    assert (tmp_path / "co" / "feature.txt").exists()


async def test_annotated_tag_resolves_to_its_commit(served: Served, tmp_path: Path) -> None:
    sha = await checkout(served.url, "v1", tmp_path / "co")
    assert sha == served.first
    assert (tmp_path / "co" / "train.py").read_text() == "print('v1')\n"
    assert not (tmp_path / "co" / "feature.txt").exists()


@pytest.mark.parametrize("length", [40, 8])
async def test_commit_sha_full_and_short(served: Served, tmp_path: Path, length: int) -> None:
    sha = await checkout(served.url, served.first[:length], tmp_path / "co")
    assert sha == served.first


async def test_missing_ref_fails_with_clear_message(served: Served, tmp_path: Path) -> None:
    with pytest.raises(BuildError) as err:
        await checkout(served.url, "no-such-branch", tmp_path / "co")
    assert str(err.value) == (
        f"git: ref 'no-such-branch' was not found in '{served.url}' (not a branch, tag or commit)."
    )


async def test_missing_repository_names_the_git_error(daemon: GitDaemon, tmp_path: Path) -> None:
    url = daemon.url("absent.git")
    with pytest.raises(BuildError) as err:
        await checkout(url, None, tmp_path / "co")
    msg = str(err.value)
    assert msg.startswith(f"git: cannot clone '{url}': ")
    assert "absent.git" in msg or "not exported" in msg or "not found" in msg


@pytest.mark.parametrize("scheme", ["file://", ""])
async def test_local_paths_are_refused(served: Served, tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}{served.daemon.base / 'proj.git'}"
    with pytest.raises(BuildError) as err:
        await checkout(url, None, tmp_path / "co")
    assert "transport 'file' not allowed" in str(err.value)
    assert not (tmp_path / "co" / "train.py").exists()


async def test_ext_transport_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(BuildError) as err:
        await checkout(f"ext::sh -c touch% {marker}", None, tmp_path / "co")
    assert "transport 'ext' not allowed" in str(err.value)
    assert not marker.exists()


async def test_credentials_in_url_never_reach_errors_or_log(tmp_path: Path) -> None:
    log = Log()
    # Port 9 (discard) on loopback: nothing listens, the clone fails fast.
    url = "http://alice:s3cret-token@127.0.0.1:9/repo.git"
    with pytest.raises(BuildError) as err:
        await checkout(url, None, tmp_path / "co", log)
    assert "s3cret-token" not in str(err.value)
    assert "***@127.0.0.1:9" in str(err.value)
    assert all("s3cret-token" not in ln for ln in log.lines)


async def test_option_like_ref_is_refused(served: Served, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="starts with '-'"):
        await checkout(served.url, "--upload-pack=touch x", tmp_path / "co")


async def test_submodules_are_initialised(daemon: GitDaemon, tmp_path: Path) -> None:
    lib = daemon.new_repo("lib.git")
    commit_files(lib, {"util.py": "X = 1\n"}, "lib")
    daemon.publish(lib)
    top = daemon.new_repo("top.git")
    commit_files(top, {"main.py": "import lib\n"}, "top")
    # Added from the daemon's URL so the recorded submodule URL is git://.
    git(top, "-c", "protocol.file.allow=always", "submodule", "add", "-q", daemon.url("lib.git"))
    git(top, "commit", "-q", "-m", "add lib")
    daemon.publish(top)

    await checkout(daemon.url("top.git"), "main", tmp_path / "co")
    assert (tmp_path / "co" / "lib" / "util.py").read_text() == "X = 1\n"


async def test_submodule_with_local_url_is_refused(daemon: GitDaemon, tmp_path: Path) -> None:
    secret = daemon.new_repo("secret.git")
    commit_files(secret, {"key.txt": "secret\n"}, "secret")
    daemon.publish(secret)
    top = daemon.new_repo("sneaky.git")
    commit_files(top, {"main.py": "\n"}, "top")
    local = f"file://{daemon.base / 'secret.git'}"
    git(top, "-c", "protocol.file.allow=always", "submodule", "add", "-q", local, "secret")
    git(top, "commit", "-q", "-m", "add a local submodule")
    daemon.publish(top)

    with pytest.raises(BuildError) as err:
        await checkout(daemon.url("sneaky.git"), None, tmp_path / "co")
    assert str(err.value).startswith(
        f"git: cannot fetch the submodules of '{daemon.url('sneaky.git')}'"
    )
    assert not (tmp_path / "co" / "secret" / "key.txt").exists()
