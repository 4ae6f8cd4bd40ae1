"""ohfp-mock: a simulated cloud, the embedded default Host Factory provider (no account needed).

The provider factory is :func:`ohfp_mock.provider.make_provider` (entry point ``mock``); the
simulated cloud is :class:`ohfp_mock.cloud.MockCloud`; ``python -m ohfp_mock`` controls it.
"""
