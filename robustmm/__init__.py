"""robustmm: which hyperparameters make a multimodal model robust, to which attack, on which
modality, and at what cost in clean accuracy."""

from robustmm.config import RunConfig
from robustmm.errors import ConfigError, DataError, RobustMMError, TrainingError, UnknownNameError

__all__ = ["ConfigError", "DataError", "RobustMMError", "RunConfig", "TrainingError", "UnknownNameError"]
__version__ = "0.1.0"
