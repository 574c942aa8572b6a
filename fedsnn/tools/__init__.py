"""Layer 4, the tools: the `fedsnn` command, the offline bench, the web demo and the in-process grid
(they may import everything below). The results experiments live outside the package, in
experiments/."""
