"""plantstream: the shared library every service stands on.

Settings, the Avro contract codec, the topic catalog, Kafka helpers, the ClickHouse
connection and migrations, telemetry, and the ``plantstream`` command line.
"""

__version__ = "0.1.0"
