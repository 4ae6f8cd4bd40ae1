"""ohfp-example-provider: the provider built in ohfp's tutorial (docs/writing-a-provider.md)."""
