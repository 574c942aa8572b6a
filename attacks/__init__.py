"""Gradient inversion. Sees only what an attacker sees: no Flower, no data loading."""
