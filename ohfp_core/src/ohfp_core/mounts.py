"""Which file system a path lives on, from the kernel's mount table.

SQLite's WAL mode needs shared memory that every process using the database maps, which
network and cluster file systems (NFS, CIFS, Lustre, GPFS …) do not provide across hosts;
:mod:`ohfp_core.sqlite` asks :func:`filesystem_type` whether the work directory sits on one.
The mount whose mount point is the longest prefix of the resolved path wins, as the kernel
decides.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

MOUNT_TABLES: Sequence[Path] = (Path("/proc/self/mountinfo"), Path("/proc/mounts"))
"""Read in this order; the first readable one is used."""

SHARED_TYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb", "smb2", "smb3", "smbfs", "afs", "ncpfs", "9p", "lustre", "gpfs",
        "beegfs", "glusterfs", "ceph", "cephfs", "ocfs2", "gfs", "gfs2", "panfs", "pvfs2", "orangefs",
        "wekafs", "quobyte", "virtiofs", "davfs", "sshfs",
    }
)  # fmt: skip
"""File systems shared between hosts or reached over a network; also every ``fuse.*``
type (sshfs, s3fs, gcsfuse, glusterfs over FUSE …)."""

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """Mount points in the tables escape space, tab, newline and backslash as ``\\ooo``."""
    return _OCTAL.sub(lambda match: chr(int(match.group(1), 8)), field)


def _mountinfo(lines: Iterable[str]) -> list[tuple[str, str]]:
    found = []
    for line in lines:
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        separator = fields.index("-", 6)
        found.append((_unescape(fields[4]), fields[separator + 1]))
    return found


def _mounts(lines: Iterable[str]) -> list[tuple[str, str]]:
    return [
        (_unescape(fields[1]), fields[2]) for fields in (line.split() for line in lines) if len(fields) >= 3
    ]


def mount_points(tables: Sequence[Path] | None = None) -> list[tuple[str, str]]:
    """(mount point, file system type) of every mount, from the first readable table."""
    for table in MOUNT_TABLES if tables is None else tables:
        try:
            lines = table.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        return _mountinfo(lines) if table.name == "mountinfo" else _mounts(lines)
    return []


def _existing(path: Path) -> Path:
    """``path`` resolved, or its nearest existing ancestor (the work dir may not exist yet)."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    return current.resolve()


def filesystem_type(path: Path, tables: Sequence[Path] | None = None) -> str | None:
    """The type of the file system holding ``path`` (``ext4``, ``nfs4`` …); None when no
    mount table can be read."""
    target = str(_existing(path))
    best: tuple[int, str] | None = None
    for point, fstype in mount_points(tables):
        inside = target == point or point == "/" or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)
    return None if best is None else best[1]


def is_shared(fstype: str | None) -> bool:
    """True for a network or cluster file system."""
    return fstype is not None and (fstype in SHARED_TYPES or fstype.startswith("fuse."))
