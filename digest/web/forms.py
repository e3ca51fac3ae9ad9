"""The base of every web form model: each field cleaned once, where it enters (``digest.cleaning``)."""

from __future__ import annotations

from pydantic import BaseModel, field_validator

from digest.cleaning import clean_value


class CleanForm(BaseModel):
    """A form whose every text field loses NUL, the C0/C1 controls but tab and newline, and bidi controls.

    Subclasses only declare fields: a field added later is cleaned too.
    """

    @field_validator("*", mode="before")
    @classmethod
    def _clean(cls, v: object) -> object:
        return clean_value(v)
