"""`import pytorch_lightning`'s logger: `AlexandriaLogger` over `pytorch_lightning.loggers.Logger`, for code
that uses that import name (alexandria.integrations.lightning explains the logger)."""

from __future__ import annotations

from .lightning import _logger_class

AlexandriaLogger = _logger_class("pytorch_lightning", __name__)
