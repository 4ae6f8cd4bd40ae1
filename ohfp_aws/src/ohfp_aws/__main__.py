"""``python -m ohfp_aws``: the same as ``ohfp-aws``."""

from ohfp_aws.cli import main

raise SystemExit(main())
