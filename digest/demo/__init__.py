"""The offline demo (`digest demo`) and its stand-ins for the outside world: a loopback HTTP server that plays
Hugging Face from a bundled snapshot (``snapshot_server``) and an embedded SMTP server (``smtp_sink``).

Not used by production code (import-linter keeps it so); tests and benchmarks use the stand-ins too.
Importing this package imports nothing else, so ``python -m digest.demo.smtp_sink`` starts fast.
"""
