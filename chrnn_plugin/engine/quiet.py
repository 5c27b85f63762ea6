"""Known third-party warnings the tools in ``tools/`` do not print.

Each is about code the tools call but the user cannot change, and none says
anything about the run. Every tool calls :func:`silence_known_warnings` first
thing, and the runner tools attach :class:`KnownMessagesFilter` to the
runner's logger (:func:`quiet_logger`). Importing the library changes no
filter: only the tools opt in, so a program that imports ``chrnn_plugin``
still sees every warning.

This module imports the standard library only (no relative imports either),
so it works before torch, MMEngine or MMPretrain are imported.
"""

import logging
import warnings

#: ``(message, category, module)`` of ``warnings.warn`` calls, as
#: :func:`warnings.filterwarnings` takes them (regular expressions matched at
#: the start of the message and against the whole module name).
KNOWN_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # mmcv-lite has no compiled ops, and mmcv.cnn.bricks.transformer says so
    # whenever MMPretrain's models are imported (at the first model build),
    # although no C-HRNN model uses MultiScaleDeformableAttention.
    (
        r'Fail to import ``MultiScaleDeformableAttention``',
        UserWarning,
        r'mmcv\.cnn\.bricks\.transformer',
    ),
)

#: Starts of the warnings MMEngine logs (``print_log``) that the tools drop.
#: MMEngine 0.10's ``CheckpointHook.before_train`` builds a ``FileClient`` even
#: when ``file_client_args`` is None, which it then ignores; the ``FileClient``
#: and its ``'disk'`` backend each log a deprecation warning about a call the
#: config never asked for.
KNOWN_LOG_MESSAGES: tuple[str, ...] = (
    '"FileClient" will be deprecated in future.',
    '"HardDiskBackend" is the alias of "LocalBackend" and the former will be deprecated',
)


class KnownMessagesFilter(logging.Filter):
    """Drops the warning records listed in :data:`KNOWN_LOG_MESSAGES`."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is kept.

        Args:
            record: A log record.

        Returns:
            bool: False for a known warning, True for anything else.
        """
        return not (
            record.levelno == logging.WARNING and record.getMessage().startswith(KNOWN_LOG_MESSAGES)
        )


def silence_known_warnings() -> None:
    """Ignore the ``warnings.warn`` calls of :data:`KNOWN_WARNINGS` (idempotent).

    Call it before the imports that warn: a warning already shown stays shown.
    """
    for message, category, module in KNOWN_WARNINGS:
        # filterwarnings replaces an identical filter, so calling twice adds none.
        warnings.filterwarnings('ignore', message=message, category=category, module=module)


def quiet_logger(logger: logging.Logger) -> None:
    """Attach :class:`KnownMessagesFilter` to ``logger`` once.

    MMEngine's ``MMLogger`` instances live outside :mod:`logging`'s hierarchy,
    so the filter goes on the instance (the runner's ``runner.logger``), which
    ``print_log(..., logger='current')`` writes to.

    Args:
        logger: The logger whose known warnings are dropped.
    """
    if not any(isinstance(f, KnownMessagesFilter) for f in logger.filters):
        logger.addFilter(KnownMessagesFilter())
