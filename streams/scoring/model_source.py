"""Where score workers get their model, and how they notice a new one (hot reload).

The source is the model directory (``EVTWIN_MODEL_DIR``, default ``models/``) that ``evtwin train``
writes atomically. Workers poll a cheap fingerprint every ``EVTWIN_MODEL_POLL_S`` seconds and load
a new :class:`models.scorer.Scorer` only when it changed; a model that fails to load is logged and
the current one stays in service.
"""

from __future__ import annotations

import logging
from typing import Any

from streams.settings import Settings

log = logging.getLogger(__name__)


class ModelSource:
    """Loads the current model and polls for a newer one."""

    def __init__(self, settings: Settings) -> None:
        self.model_dir = settings.model_dir
        self._fingerprint: str | None = None
        self._scorer: Any = None

    def current(self) -> Any:
        """The model in service, loaded on first use.

        Raises:
            models.errors.ModelError: when there is no usable model (the message says how to
                train one).
        """
        if self._scorer is None:
            from models.scorer import Scorer, fingerprint

            self._fingerprint = fingerprint(self.model_dir)
            self._scorer = Scorer.load(self.model_dir)
        return self._scorer

    def poll(self) -> Any | None:
        """Return a newly promoted model, or ``None`` when the model has not changed."""
        from models.errors import ModelError
        from models.scorer import Scorer, fingerprint

        try:
            fp = fingerprint(self.model_dir)
        except (ModelError, OSError):
            return None
        if fp == self._fingerprint:
            return None
        try:
            scorer = Scorer.load(self.model_dir)
        except (ModelError, OSError) as exc:
            log.warning("new model in %s does not load, keeping %s: %s", self.model_dir,
                        getattr(self._scorer, "version", "?"), exc)
            self._fingerprint = fp
            return None
        self._fingerprint, self._scorer = fp, scorer
        return scorer


__all__ = ["ModelSource"]
