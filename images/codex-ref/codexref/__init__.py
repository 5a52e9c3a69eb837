"""Reference Codex node: the Codex-era REST contract, byte-exact content addressing, a block repo."""

VERSION = "v0.2.5-ref"
