"""The provider hooks that span every AWS API, one module per hook (``ohfp_machine_status`` is
:mod:`.machine_status` …); :mod:`ohfp_aws.provider` delegates to them.
"""
