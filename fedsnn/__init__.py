"""fedsnn: attack-in-the-loop privacy audits of federated learning with ANNs and SNNs."""

import warnings

__version__ = "0.1.0"

# Third-party noise in every app process, silenced at its known sources only (the project's own
# warnings, and everyone else's, still show): scienceplots (imported by torchmetrics) calls
# Matplotlib functions deprecated in 3.11, and Ray tips about a future default for GPU-less actors.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"scienceplots(\.|$)")
warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning,
                        module=r"ray\._private\.worker")
