"""Runnable examples, shipped as `engine.examples` so `flowkernel demo` can run them."""
