"""Flower strategy wrappers: the curious server, DP, spike-level DP, robust rules."""
