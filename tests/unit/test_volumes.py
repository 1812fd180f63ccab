"""The volume store never follows a link out of a volume (issue 24, items 2, 16 and 19): links of every kind
planted in a volume, as a container could, against every server-side operation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal.server.errors import Invalid, NotFound
from shoal.server.volumes import VolumeStore


@pytest.fixture
def planted(tmp_path: Path) -> tuple[VolumeStore, Path, Path]:
    """A volume with links planted in it: to a secret file and a folder outside, relative and absolute."""
    outside = tmp_path / "server-state"
    outside.mkdir()
    (outside / "local.token").write_text("the-token")
    store = VolumeStore(tmp_path / "volumes")
    store.open("vol", create_if_missing=True)
    root = tmp_path / "volumes" / "vol"
    (root / "dir").mkdir()
    (root / "dir" / "real.txt").write_text("real")
    os.symlink(outside / "local.token", root / "dir" / "token-link")
    os.symlink("../../../server-state/local.token", root / "dir" / "relative-link")
    os.symlink(outside, root / "state-dir")
    os.symlink("real.txt", root / "dir" / "inner-link")
    return store, root, outside


def test_copying_a_folder_copies_its_links_as_links(planted):
    store, root, outside = planted
    store.copy("vol", ["dir"], "copied")
    assert (root / "copied" / "real.txt").read_text() == "real"
    for name in ("token-link", "relative-link", "inner-link"):
        assert (root / "copied" / name).is_symlink()
        assert os.readlink(root / "copied" / name) == os.readlink(root / "dir" / name)
    assert not any(p.read_bytes() == b"the-token" for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_nothing_writes_through_a_link(planted):
    store, root, outside = planted
    store.copy("vol", ["dir/real.txt"], "dir/token-link")  # cp onto a link replaces the link
    store.write("vol", "dir/relative-link", b"overwritten")  # so does a write
    assert (outside / "local.token").read_text() == "the-token"
    assert (root / "dir" / "token-link").read_text() == "real" and not (root / "dir" / "token-link").is_symlink()
    with pytest.raises(Invalid):
        store.write("vol", "state-dir/planted.txt", b"x")  # a linked folder is not entered
    with pytest.raises(Invalid):
        store.copy("vol", ["dir/real.txt"], "state-dir/")
    assert sorted(p.name for p in outside.iterdir()) == ["local.token"]


def test_nothing_reads_or_lists_through_a_link(planted):
    store, root, outside = planted
    with pytest.raises(Invalid):
        store.read("vol", "dir/token-link")
    with pytest.raises(Invalid):
        store.read("vol", "state-dir/local.token")
    assert [e["type"] for e in store.listdir("vol", "state-dir/", recursive=True)] == ["symlink"]  # the link only
    listed = {e["path"]: e["type"] for e in store.listdir("vol", "/", recursive=True)}
    assert listed["state-dir"] == "symlink" and listed["dir/token-link"] == "symlink"
    assert not any(p.startswith("state-dir/") for p in listed)


def test_removing_a_link_removes_the_link_only_and_the_root_is_refused(planted):
    store, root, outside = planted
    store.remove("vol", "state-dir", recursive=True)
    store.remove("vol", "dir", recursive=True)
    assert (outside / "local.token").read_text() == "the-token"
    assert list(root.iterdir()) == []
    with pytest.raises(Invalid, match="root"):
        store.remove("vol", "/", recursive=True)


def test_bad_paths_are_refused_with_a_message(planted):
    store, root, _ = planted
    for path in ("a\0b", "x" * 300, "/".join(["d"] * 3000), "../escape"):
        with pytest.raises(Invalid):
            store.write("vol", path, b"x")
    with pytest.raises(Invalid, match="into itself"):
        store.copy("vol", ["dir"], "dir/")
    with pytest.raises(NotFound):
        store.read("vol", "missing.txt")


def test_an_upload_is_published_whole_and_one_cut_off_is_gone_after_a_restart(tmp_path: Path):
    store = VolumeStore(tmp_path / "volumes")
    store.open("vol", create_if_missing=True)
    upload = store.upload("vol", "big.bin")
    upload.write(b"a" * 1000)
    assert store.listdir("vol", "/", recursive=True) == []  # not visible until whole
    upload.commit()
    assert store.read("vol", "big.bin") == b"a" * 1000
    cut_off = store.upload("vol", "cut.bin")
    cut_off.write(b"half")  # the server dies here (its file closed by the process's end)
    cut_off._file.close()
    VolumeStore(tmp_path / "volumes")
    assert list((tmp_path / "volumes" / ".uploads").iterdir()) == []
    assert [e["path"] for e in store.listdir("vol", "/", recursive=True)] == ["big.bin"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root server hands volumes over (its containers run as nobody)")
def test_volumes_of_an_older_server_become_the_sandbox_users_once(tmp_path: Path):
    root = tmp_path / "volumes"
    (root / "old" / "dir").mkdir(parents=True)
    (root / "old" / "dir" / "file.txt").write_text("x")
    os.symlink("/etc/passwd", root / "old" / "link")
    owner = (65534, 65534)
    VolumeStore(root, owner=owner)
    for path in [root / "old", root / "old" / "dir", root / "old" / "dir" / "file.txt"]:
        assert (path.stat().st_uid, path.stat().st_gid) == owner
    assert os.lstat(root / "old" / "link").st_uid == 65534 and os.stat("/etc/passwd").st_uid == 0
