"""Errors a user can act on.

    UserError                 -- input or state the user can fix; one line, exit status 2
    ├── ConfigError           -- a setting is invalid (names the setting)
    ├── NotFound              -- a review, action, agency... does not exist
    ├── InvalidInput          -- a value or file is malformed (names the field, file or line)
    ├── SchemaOutOfDate       -- the database needs `dhr-workflow init`
    └── TimeWentBack          -- a tick earlier than one already committed

Anything else reaching the CLI is a bug and is allowed to show a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error whose message tells the user what is wrong and what to do."""

    exit_code = 2


class ConfigError(UserError):
    pass


class NotFound(UserError):
    pass


class InvalidInput(UserError):
    pass


class SchemaOutOfDate(UserError):
    pass


class TimeWentBack(UserError):
    def __init__(self, message: str, *, behind: float = 0.0) -> None:
        super().__init__(message)
        self.behind = behind  # seconds between the tick's time and the later mark
