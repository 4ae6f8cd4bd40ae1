"""Settings every test directory relies on, applied before any test module is imported."""

from __future__ import annotations

import os

from testbeds import AMIS_FILE

# moto reads its AMI catalogue when it is imported: a two-image file keeps every moto test
# (in-process or a server in the test process) fast, whichever directory imports moto first.
os.environ.setdefault("MOTO_AMIS_PATH", str(AMIS_FILE))
