"""The gateway side of the platform: the wire contract gateways speak (Avro or JSON batches),
a simulated factory, a replayer for recorded data, and the sender that produces batches to
the gateway topic."""
