"""report.json (versioned schema), report.md."""

from slimkit.report.schema import SCHEMA_VERSION, Entry, Report

__all__ = ["SCHEMA_VERSION", "Entry", "Report"]
