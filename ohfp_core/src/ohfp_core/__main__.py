"""``python -m ohfp_core`` is the ``ohfp`` command (the generated HF scripts use this form)."""

from ohfp_core.cli import main

raise SystemExit(main())
