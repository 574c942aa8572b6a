"""Models: the DLG LeNet and LeNet-5, and their spiking twins (spikingjelly, multi-step)."""

from fedsnn.core.models.encoders import ENCODERS, build_encoder
from fedsnn.core.models.nets import Classifier, SpikingClassifier
from fedsnn.core.models.registry import MODELS, SURROGATES, ModelSpec, build_model, spec_for

__all__ = ["ENCODERS", "MODELS", "SURROGATES", "Classifier", "ModelSpec", "SpikingClassifier",
           "build_encoder", "build_model", "spec_for"]
