"""report.json (versioned schema), report.md and report.html."""

from slimkit.report._write import write_report
from slimkit.report.schema import SCHEMA_VERSION, Entry, Report

__all__ = ["SCHEMA_VERSION", "Entry", "Report", "write_report"]
