"""The command lines (installed as attngan-* console scripts; eval/*.py and the top-level scripts wrap them)."""
