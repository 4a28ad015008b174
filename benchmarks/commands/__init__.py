"""The ``brokerbench`` command line: :mod:`.cli` routes to one module per subcommand."""
