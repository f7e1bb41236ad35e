from __future__ import annotations


class ApiError(Exception):
    """An API error with a status, a message and, when one field is at fault, its name."""

    def __init__(self, status: int, message: str, field: str | None = None):
        self.status = status
        self.message = message
        self.field = field
        super().__init__(message)

    @property
    def full_message(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message
