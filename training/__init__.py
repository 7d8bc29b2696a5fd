"""Training and evaluation of the twin's learned models (RUL band, failure, anomaly).

Entry points: :func:`training.train.train` (``evtwin train``) and
:func:`training.evaluate.evaluate_saved` (``evtwin evaluate``). MLflow is imported lazily, only
when a run is logged. Dependencies point one way: ``datasets`` and ``models`` <- ``training``.
"""

from __future__ import annotations

from training.errors import TrainingDataError, TrainingError

__all__ = ["TrainingDataError", "TrainingError"]
