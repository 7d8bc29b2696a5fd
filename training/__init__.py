"""Training and evaluation of the twin's learned models (RUL band, failure, anomaly).

Entry points: :func:`training.train.train` (``evtwin train``: a new candidate version in the model
registry), :func:`training.promotion.promote` and ``rollback`` (``evtwin model promote | rollback``)
and :func:`training.evaluate.evaluate_saved` (``evtwin evaluate``). MLflow is imported lazily, only
when a run is logged or its alias moved. Dependencies point one way: ``datasets`` and ``models`` <- ``training``.
"""

from __future__ import annotations

from training.errors import TrainingDataError, TrainingError

__all__ = ["TrainingDataError", "TrainingError"]
