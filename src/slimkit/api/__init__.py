"""The Python API that mirrors the CLI, one function per command."""
