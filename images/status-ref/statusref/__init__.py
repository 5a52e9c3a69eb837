"""Reference status-go peer: the status-backend HTTP surface and the Community History Archive
protocol over Codex (see docs/status-ref.md)."""
