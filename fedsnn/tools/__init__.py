"""The top layer: command line, benches, experiments and the demo (they may import everything below)."""
