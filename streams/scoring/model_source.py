"""Where score workers get their model, and how they notice a new one (hot reload).

The source is the model registry (``EVTWIN_MODEL_DIR``, see ``models.registry``): workers load its
``current`` version, never a candidate. Every ``EVTWIN_MODEL_POLL_S`` seconds they read a cheap
fingerprint (the pointer and one model card) and load a new :class:`models.scorer.Scorer` only when
it changed — that is, when ``evtwin model promote``/``rollback`` (or ``evtwin train --promote``)
moved the pointer. A model that fails to load is logged and the one in service stays. A model
directory in the old flat layout is one implicit current version.
"""

from __future__ import annotations

import logging
from typing import Any

from streams.settings import Settings

log = logging.getLogger(__name__)


class ModelSource:
    """Loads the current model and polls for a newly promoted one."""

    def __init__(self, settings: Settings) -> None:
        self.model_dir = settings.model_dir
        self._fingerprint: str | None = None
        self._scorer: Any = None

    def current(self) -> Any:
        """The model in service, loaded on first use.

        Raises:
            models.errors.ModelError: when there is no usable current model (the message says how
                to train or promote one).
        """
        if self._scorer is None:
            from models.scorer import Scorer

            self._scorer = Scorer.load(self.model_dir)
            self._fingerprint = self._scorer.fingerprint
        return self._scorer

    def poll(self) -> Any | None:
        """Return the newly current model, or ``None`` when the current one has not changed."""
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
        self._fingerprint, self._scorer = scorer.fingerprint, scorer
        return scorer


__all__ = ["ModelSource"]
