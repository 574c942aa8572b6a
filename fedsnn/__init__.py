"""fedsnn: attack-in-the-loop privacy audits of federated learning with ANNs and SNNs."""

__version__ = "0.1.0"
