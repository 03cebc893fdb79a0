"""The operator's log: text lines or one JSON object per line (TRAINYARD_LOG_FORMAT).

`configure` sets it up once at start: text is `time LEVEL logger: message`; JSON is kopf's
own format (`kopf.configure(log_format=kopf.LogFormat.JSON)`, python-json-logger: `message`,
`timestamp`, `severity` and any extra fields), so that kopf's lines and ours read alike and
a log collector (ELK, Loki) parses every line. `job_log` is the logger of one TrainingJob:
each line starts with `<namespace>/<name>: ` and, in JSON, carries `namespace` and `job`
fields, so one job's story can be filtered out of the log either way.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import kopf

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str, log_format: str) -> None:
    """Route every log line (Python warnings too) through the chosen format at `level`."""
    if log_format == "json":
        kopf.configure(log_format=kopf.LogFormat.JSON, verbose=level == "DEBUG")
        logging.getLogger().setLevel(level)
    else:
        logging.basicConfig(level=level, format=TEXT_FORMAT)
    # A warning printed straight to stderr would be the one line a JSON parser chokes on.
    logging.captureWarnings(True)
    # kopf logs every watch event at DEBUG and much else at INFO, and its liveness endpoint a
    # line per probe: keep them out unless asked, so the default level tells the jobs' story.
    if level != "DEBUG":
        logging.getLogger("kopf").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class JobLog(logging.LoggerAdapter[logging.Logger]):
    """A logger whose lines name one TrainingJob."""

    def __init__(self, logger: logging.Logger, namespace: str, name: str) -> None:
        super().__init__(logger, {"namespace": namespace, "job": name})
        self.prefix = f"{namespace}/{name}: "

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return f"{self.prefix}{msg}", kwargs


def job_log(logger: logging.Logger, namespace: str, name: str) -> JobLog:
    """The logger of the job `namespace/name` (see the module docstring)."""
    return JobLog(logger, namespace, name)
