"""End-to-end tests: ohfp installed from the checkout, driven through the generated HF scripts."""
