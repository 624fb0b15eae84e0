"""Settings of the model backends (one slice of :class:`core.settings.Settings`).

Placeholder: the model-backends issue fills this in.
"""

from __future__ import annotations

from pydantic import BaseModel


class ModelsSettings(BaseModel):
    pass
