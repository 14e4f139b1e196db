"""Errors a user can fix: the CLI prints their message alone, without a traceback."""


class UserError(Exception):
    """Bad input or configuration; the message says what is wrong and how to fix it."""


class DataError(UserError):
    """A data file that cannot be used: the message names the file, the line and the problem."""

    def __init__(self, path: object, problem: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = path, line, problem
