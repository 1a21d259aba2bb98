"""Runnable examples, shipped as `flowkernel.examples` so `flowkernel demo` can run them."""
