"""Safe unpacking: path escapes, links, devices, bombs and member limits refuse the archive."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from lookupd.update.archives import Limits, gunzip, kind_of, unpack
from lookupd.update.errors import ArchiveError


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            body = data.get(member.name)
            if body is not None:
                member.size = len(body)
            tar.addfile(member, io.BytesIO(body) if body is not None else None)
    return path


def _file(name: str, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


def _zip(path: Path, members: dict[str, bytes], modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for name, body in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            bundle.writestr(info, body)
    return path


def test_kinds_are_told_by_content(tmp_path: Path) -> None:
    tgz = _tar(tmp_path / "a.bin", [_file("x/a.mmdb")], {"x/a.mmdb": b"m"})
    zipped = _zip(tmp_path / "b.bin", {"a.csv": b"c"})
    gz = tmp_path / "c.bin"
    gz.write_bytes(gzip.compress(b"1.0.0.0,1.0.0.255,AU\n"))
    plain = tmp_path / "d.bin"
    plain.write_bytes(b"1.0.0.0,1.0.0.255,AU\n")
    assert [kind_of(p) for p in (tgz, zipped, gz, plain)] == ["tar.gz", "zip", "gz", "plain"]


def test_only_the_matching_members_are_extracted_flat(tmp_path: Path) -> None:
    members = [
        _file("GeoLite2-Country_20261201", tarfile.DIRTYPE),
        _file("GeoLite2-Country_20261201/GeoLite2-Country.mmdb"),
        _file("GeoLite2-Country_20261201/LICENSE.txt"),
        _file("GeoLite2-Country_20261201/COPYRIGHT.txt"),
    ]
    data = {
        "GeoLite2-Country_20261201/GeoLite2-Country.mmdb": b"mmdb",
        "GeoLite2-Country_20261201/LICENSE.txt": b"l",
        "GeoLite2-Country_20261201/COPYRIGHT.txt": b"c",
    }
    archive = _tar(tmp_path / "a.tar.gz", members, data)
    out = tmp_path / "out"
    out.mkdir()
    assert unpack(archive, "tar.gz", out, ["*.mmdb"]) == [out / "GeoLite2-Country.mmdb"]
    assert sorted(p.name for p in out.iterdir()) == ["GeoLite2-Country.mmdb"]


def test_zip_members_by_pattern(tmp_path: Path) -> None:
    archive = _zip(
        tmp_path / "a.zip",
        {
            "GeoLite2-Country-CSV_20261201/GeoLite2-Country-Blocks-IPv4.csv": b"4",
            "GeoLite2-Country-CSV_20261201/GeoLite2-Country-Blocks-IPv6.csv": b"6",
            "GeoLite2-Country-CSV_20261201/GeoLite2-Country-Locations-en.csv": b"en",
            "GeoLite2-Country-CSV_20261201/GeoLite2-Country-Locations-de.csv": b"de",
        },
    )
    out = tmp_path / "out"
    out.mkdir()
    patterns = ["*-Blocks-IPv4.csv", "*-Blocks-IPv6.csv", "*-Locations-en.csv"]
    names = [p.name for p in unpack(archive, "zip", out, patterns)]
    assert names == [
        "GeoLite2-Country-Blocks-IPv4.csv",
        "GeoLite2-Country-Blocks-IPv6.csv",
        "GeoLite2-Country-Locations-en.csv",
    ]


@pytest.mark.parametrize(
    ("member", "problem"),
    [
        (_file("../escape.mmdb"), "'..'"),
        (_file("a/../../escape.mmdb"), "'..'"),
        (_file("/etc/escape.mmdb"), "absolute"),
        (_file("x.mmdb", tarfile.SYMTYPE), "a link"),
        (_file("y.mmdb", tarfile.LNKTYPE), "a link"),
        (_file("dev", tarfile.CHRTYPE), "device"),
        (_file("fifo", tarfile.FIFOTYPE), "device, FIFO"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "device", "fifo"],
)
def test_unsafe_tar_members_refuse_the_whole_archive(
    tmp_path: Path, member: tarfile.TarInfo, problem: str
) -> None:
    if member.issym() or member.islnk():
        member.linkname = "/etc/passwd"
    good = _file("good.mmdb")
    data = {"good.mmdb": b"m"}
    if member.isfile():
        data[member.name] = b"evil"
    archive = _tar(tmp_path / "a.tar.gz", [good, member], data)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveError, match=problem):
        unpack(archive, "tar.gz", out, [])
    assert list(out.iterdir()) == []
    assert not (tmp_path / "escape.mmdb").exists()


@pytest.mark.parametrize(
    ("name", "mode", "problem"),
    [
        ("../evil.csv", 0, "'..'"),
        ("/abs/evil.csv", 0, "absolute"),
        ("link.csv", stat.S_IFLNK | 0o777, "a link"),
    ],
)
def test_unsafe_zip_members_refuse_the_whole_archive(
    tmp_path: Path, name: str, mode: int, problem: str
) -> None:
    archive = _zip(tmp_path / "a.zip", {"good.csv": b"g", name: b"/etc/passwd"}, {name: mode})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveError, match=problem):
        unpack(archive, "zip", out, [])
    assert list(out.iterdir()) == []


def test_bombs_are_refused_by_declared_and_actual_sizes(tmp_path: Path) -> None:
    zeros = b"\0" * 1_000_000  # compresses to about 1 KB
    archive = _zip(tmp_path / "bomb.zip", {f"{n}.csv": zeros for n in range(5)})
    assert archive.stat().st_size < 20_000
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveError, match="more than 500,000"):
        unpack(archive, "zip", out, [], Limits(max_member_bytes=500_000))
    with pytest.raises(ArchiveError, match="in all"):
        unpack(archive, "zip", out, [], Limits(max_total_bytes=3_000_000))
    tgz = _tar(tmp_path / "bomb.tar.gz", [_file("a.csv")], {"a.csv": zeros})
    with pytest.raises(ArchiveError, match="more than 500,000"):
        unpack(tgz, "tar.gz", out, [], Limits(max_member_bytes=500_000))
    assert list(out.iterdir()) == []


def test_a_gzip_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "x.mmdb.gz"
    bomb.write_bytes(gzip.compress(b"\0" * 2_000_000))
    target = tmp_path / "x.mmdb"
    with pytest.raises(ArchiveError, match="more than 100,000 bytes"):
        gunzip(bomb, target, Limits(max_member_bytes=100_000))
    assert not target.exists()


def test_too_many_members(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "many.zip", {f"{n}.txt": b"" for n in range(20)})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveError, match="more than 10 members"):
        unpack(archive, "zip", out, [], Limits(max_members=10))
    tgz = _tar(tmp_path / "many.tar.gz", [_file(f"{n}.txt") for n in range(20)], {})
    with pytest.raises(ArchiveError, match="more than 10 members"):
        unpack(tgz, "tar.gz", out, [], Limits(max_members=10))


def test_no_matching_member_is_an_error(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"README.txt": b"r"})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveError, match=r"no member matching \*\.mmdb"):
        unpack(archive, "zip", out, ["*.mmdb"])


def test_corrupt_archives_are_errors(tmp_path: Path) -> None:
    broken = tmp_path / "a.tar.gz"
    broken.write_bytes(gzip.compress(b"not a tar" * 100)[:50])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ArchiveError, match="corrupt"):
        unpack(broken, "tar.gz", out, [])
