"""The inference runtime: a composed model with its inputs, the prompt layouts it answers in, and
batched generation with per-request options. Eval, the MLflow pyfunc, `xib ask` and `xib serve`
all answer through this room; it imports nothing from xib.eval or xib.registry.
"""
