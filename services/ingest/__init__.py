"""Ingest service: gateway batches in (Avro or JSON), normalized reading batches out.

Decodes with the gateway contract, maps tags to sensors through the asset registry, converts
units, stamps ingest time and drops duplicate batches; whatever it cannot accept becomes a
dead letter with a reason code.
"""
