"""Datasets: importing this package registers every dataset."""

from robustmm.data.base import DATASETS, ModalitySpec, MultimodalDataset, Split, load_dataset

__all__ = ["DATASETS", "ModalitySpec", "MultimodalDataset", "Split", "load_dataset"]
