"""BlockExchange on /codex/blockexc/1.0.0: per-peer network and the engine. The wire format
(messages, framing, PROTOCOL_ID) is testbed_toolkit.blockexc, shared with the load agent."""
