"""Plan -> service specs (with what "ready" means for each, as data) -> compose file and per-node
config files (Jinja2)."""
