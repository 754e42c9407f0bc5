"""Models: importing this package registers every model."""

from robustmm.models import autoencoders, crmt, gmc, probe, rgmc  # noqa: F401  (registration)
from robustmm.models.base import MODELS, Chain, Classifier, RepresentationModel, build_model

__all__ = ["MODELS", "Chain", "Classifier", "RepresentationModel", "build_model"]
