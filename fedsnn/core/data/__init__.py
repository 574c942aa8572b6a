"""Datasets (embedded digits, local MNIST IDX files, Hugging Face) and their partitioning."""

from fedsnn.core.data.partition import ClientData, load_client_data, load_local_data, partition_ids
from fedsnn.core.data.sources import ACCEPTED_FORMS, DatasetError, ImageData, dataset_spec, load_dataset

__all__ = ["ACCEPTED_FORMS", "ClientData", "DatasetError", "ImageData", "dataset_spec",
           "load_client_data", "load_dataset", "load_local_data", "partition_ids"]
