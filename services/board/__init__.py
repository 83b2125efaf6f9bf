"""The maintenance board: a small web app for maintenance staff, reading the archive and the
``alerts`` topic and writing only ``alert.commands``."""
