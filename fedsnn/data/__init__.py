"""Datasets (embedded digits, local MNIST IDX files, Hugging Face) and their partitioning."""

from fedsnn.data.partition import ClientData, load_client_data, partition_ids
from fedsnn.data.sources import ACCEPTED_FORMS, DatasetError, ImageData, load_dataset

__all__ = ["ACCEPTED_FORMS", "ClientData", "DatasetError", "ImageData", "load_client_data",
           "load_dataset", "partition_ids"]
