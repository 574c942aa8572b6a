"""Top-level tools: the command line, the demo, experiments (nothing imports them)."""
