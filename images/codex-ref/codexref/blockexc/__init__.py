"""BlockExchange on /codex/blockexc/1.0.0: wire messages, per-peer network, the engine."""

PROTOCOL_ID = "/codex/blockexc/1.0.0"
