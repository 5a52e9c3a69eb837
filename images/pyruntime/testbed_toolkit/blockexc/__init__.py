"""BlockExchange wire format on /codex/blockexc/1.0.0: the messages and their framing. The
reference node's engine (codexref.blockexc) and the load generator's agent both speak it."""

PROTOCOL_ID = "/codex/blockexc/1.0.0"
