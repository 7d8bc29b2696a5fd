"""Datasets of the digital twin: the synthetic run-to-failure fleet and the Kaggle EVIoT loader."""

from __future__ import annotations

from datasets.errors import DatasetError, DatasetNotFoundError

__all__ = ["DatasetError", "DatasetNotFoundError"]
