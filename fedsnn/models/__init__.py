"""Models: the DLG LeNet and LeNet-5, and their spiking twins (spikingjelly, multi-step)."""

from fedsnn.models.encoders import ENCODERS, build_encoder
from fedsnn.models.nets import Classifier, SpikingClassifier
from fedsnn.models.registry import MODELS, SURROGATES, ModelSpec, build_model, spec_for

__all__ = ["ENCODERS", "MODELS", "SURROGATES", "Classifier", "ModelSpec", "SpikingClassifier",
           "build_encoder", "build_model", "spec_for"]
