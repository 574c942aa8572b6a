"""Layer 0, the core library: config, models, data, metrics, privacy math and accountants, judges,
the training loop, the reply protocol, a client's random draws, results and checkpoints.

It imports nothing from the layers above (attacks/, clients/, fedsnn.audit, strategies/, the apps,
fedsnn.tools); tests/test_layers.py keeps it so."""
