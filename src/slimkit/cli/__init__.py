"""The ``slimkit`` command: one module per subcommand."""
