"""Click plumbing for the ``stacklab`` command: lazily loaded sub-commands and error reporting."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

import click

__all__ = ["LazyGroup", "StacklabGroup", "configure_logging", "module_exists"]

#: Exceptions shown to the user as one ``Error: <message>`` line (exit code 1) instead of a
#: traceback; ``stacklab -vv`` or ``--debug`` shows the traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError, ImportError)


def module_exists(dotted: str) -> bool:
    """Return True if module ``dotted`` can be found, without executing any package ``__init__``.

    Parameters
    ----------
    dotted : str
        Full module name, e.g. ``"stacklab.beads.cli"``.
    """
    if dotted in sys.modules:
        return True
    parts = dotted.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
        for i in range(1, len(parts)):
            if spec is None or spec.submodule_search_locations is None:
                return False
            name = ".".join(parts[: i + 1])
            if name in sys.modules:
                spec = sys.modules[name].__spec__
                continue
            spec = importlib.machinery.PathFinder.find_spec(
                name, list(spec.submodule_search_locations)
            )
        return spec is not None
    except (ImportError, ValueError):
        return False


def _is_missing(exc: ModuleNotFoundError, module: str) -> bool:
    missing = exc.name or ""
    return bool(missing) and (module == missing or module.startswith(missing + "."))


class LazyGroup(click.Group):
    """A :class:`click.Group` whose sub-commands may live in modules imported only when used.

    Parameters
    ----------
    lazy_commands : mapping of str to str, optional
        Command name -> ``"module:attribute"`` of a :class:`click.Command` (usually a group).
        A command whose module does not exist is not listed and is "No such command" when
        invoked; any other import error is raised when the command is invoked.
    lazy_help : mapping of str to str, optional
        One-line help shown by ``--help`` for commands not imported yet (so listing the commands
        does not import every domain).
    *args, **kwargs
        Passed to :class:`click.Group`.
    """

    def __init__(
        self,
        *args: Any,
        lazy_commands: Mapping[str, str] | None = None,
        lazy_help: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands: dict[str, str] = dict(lazy_commands or {})
        self.lazy_help: dict[str, str] = dict(lazy_help or {})
        for name, target in self.lazy_commands.items():
            if ":" not in target:
                raise ValueError(
                    f"lazy command {name!r} must be given as 'module:attribute', got {target!r}"
                )

    def _lazy_present(self, name: str) -> bool:
        module = self.lazy_commands[name].partition(":")[0]
        return module_exists(module)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Eager commands plus lazy ones whose module exists, sorted."""
        names = set(super().list_commands(ctx))
        names.update(n for n in self.lazy_commands if n not in names and self._lazy_present(n))
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return an eager command, or import a lazy one (None if its module does not exist)."""
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in self.lazy_commands:
            return command
        module_name, _, attr = self.lazy_commands[cmd_name].partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if _is_missing(exc, module_name):
                return None
            raise
        command = getattr(module, attr, None)
        if not isinstance(command, click.Command):
            raise TypeError(
                f"{module_name}:{attr} must be a click command or group, "
                f"got {type(command).__name__}"
            )
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List commands; lazy ones not imported yet show their ``lazy_help`` line."""
        rows = []
        limit = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit)))
            else:
                rows.append((name, self.lazy_help.get(name, "")))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class StacklabGroup(LazyGroup):
    """Root group: turns user errors raised by any sub-command into one ``Error:`` line.

    :data:`USER_ERRORS` (including every :class:`stacklab.errors.StacklabError`, which subclass
    them) become :class:`click.ClickException` (message on stderr, exit code 1) unless the group's
    ``debug`` parameter is set or ``verbose`` is 2 or more, in which case the traceback is shown.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Invoke the group and its sub-command, reporting user errors on one line."""
        from ..errors import StacklabError

        try:
            return super().invoke(ctx)
        except (StacklabError, *USER_ERRORS) as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            if ctx.params.get("debug") or (ctx.params.get("verbose") or 0) >= 2:
                raise
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise click.ClickException(message) from exc


class _Formatter(logging.Formatter):
    """Log formatter that drops tracebacks unless asked to show them."""

    def __init__(self, fmt: str, *, tracebacks: bool) -> None:
        super().__init__(fmt)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if not self.tracebacks and (record.exc_info or record.exc_text):
            record = logging.makeLogRecord(record.__dict__)
            record.exc_info = None
            record.exc_text = None
        return super().format(record)


def configure_logging(verbose: int = 0, *, debug: bool = False) -> Callable[[], None]:
    """Send ``stacklab`` log records to stderr at a level set by ``-v`` flags.

    Parameters
    ----------
    verbose : int
        0: WARNING and above; 1: INFO; 2 or more: DEBUG with tracebacks.
    debug : bool
        DEBUG with tracebacks regardless of ``verbose``.

    Returns
    -------
    callable
        Undoes the change (removes the handler, restores the logger's level); the command calls
        it when it ends, so running the CLI in-process (tests, notebooks) leaves logging as it was.
    """
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if debug:
        level = logging.DEBUG
    logger = logging.getLogger("stacklab")
    for old in list(logger.handlers):
        if getattr(old, "_stacklab_cli", False):
            logger.removeHandler(old)
    previous_level = logger.level
    handler = logging.StreamHandler(sys.stderr)
    handler._stacklab_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(
        _Formatter("%(levelname)s %(name)s: %(message)s", tracebacks=debug or verbose >= 2)
    )
    logger.addHandler(handler)
    logger.setLevel(level)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)

    return restore
