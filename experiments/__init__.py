"""Results experiments (defense and Byzantine matrices, adaptive SNN attacks, agreement checks) and the in-process grid they run on. Run them as `python -m experiments.<name>`."""
