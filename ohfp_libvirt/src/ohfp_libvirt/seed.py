"""A machine's NoCloud seed: the ISO 9660 image cloud-init reads its user data from.

cloud-init's NoCloud data source looks for a file system labelled ``cidata`` holding two
files: ``user-data`` (the template's user data, byte for byte) and ``meta-data`` (YAML:
``instance-id`` = the domain's UUID, ``local-hostname`` = the domain's name). The image is
written as ``genisoimage -J -r -V cidata`` writes it (Joliet and Rock Ridge names, so every
reader sees ``user-data``, not ``USERDATA.;1``), with pycdlib, imported only here and only
when a machine has user data: requestMachines without user data never loads it.
"""

from __future__ import annotations

import io

LABEL = "cidata"
USER_DATA = "user-data"
META_DATA = "meta-data"


def meta_data(instance_id: str, hostname: str) -> bytes:
    """The ``meta-data`` file: the instance id and the host name (both plain tokens, no quoting)."""
    return f"instance-id: {instance_id}\nlocal-hostname: {hostname}\n".encode()


def seed_iso(user_data: bytes, instance_id: str, hostname: str) -> bytes:
    """The NoCloud seed image of one machine, built in memory."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=LABEL, joliet=3, rock_ridge="1.09")
    for name, data in ((USER_DATA, user_data), (META_DATA, meta_data(instance_id, hostname))):
        short = name.replace("-", "").upper()  # ISO 9660's own name: USERDATA.;1
        iso.add_fp(io.BytesIO(data), len(data), f"/{short}.;1", rr_name=name, joliet_path=f"/{name}")
    image = io.BytesIO()
    iso.write_fp(image)
    iso.close()
    return image.getvalue()
