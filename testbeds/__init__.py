"""Test beds the tests and the benchmarks both stand on: what they run ohfp against.

Not a distribution and not pytest glue (the fixtures stay in ``tests/``): plain modules that
``tests/`` and ``benchmarks/`` import alike, so a benchmark never imports a test module.

- :mod:`testbeds.moto_as_aws`: moto made to do what AWS does where ohfp-aws relies on it.
- :mod:`testbeds.hooked_moto`: a moto server whose every request passes a hook first (faults
  injected, calls counted).
- :mod:`testbeds.dynamodb`: DynamoDB on moto, one request at a time, fast at 100,000 machines.
- :mod:`testbeds.postgresql`: a PostgreSQL server to use (or a throwaway cluster), schemas,
  a proxy that can freeze.
- :mod:`testbeds.libvirt`: a private libvirt host in namespaces and the real guests' boot files.
"""

from __future__ import annotations

from pathlib import Path

AMIS_FILE = Path(__file__).with_name("amis.json")
"""moto's AMI catalogue cut to two images: point ``MOTO_AMIS_PATH`` at it before moto is
imported, and moto starts (and answers RunInstances) many times faster."""
