"""Datasets: importing this package registers every dataset."""

from robustmm.data import mhd, mnist_svhn, npz, synth_mhd  # noqa: F401  (registration)
from robustmm.data.base import DATASETS, ModalitySpec, MultimodalDataset, Split, load_dataset

__all__ = ["DATASETS", "ModalitySpec", "MultimodalDataset", "Split", "load_dataset"]
