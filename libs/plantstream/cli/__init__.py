"""The ``plantstream`` command line: one small module per command group."""
