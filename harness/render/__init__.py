"""Plan -> compose file and per-node config files (Jinja2)."""
