"""`earful alerting`: read settings, build the service, run until SIGTERM."""

from __future__ import annotations

from earful.alerting.service import AlertingService
from earful.core.settings import Settings


def main(settings: Settings) -> int:
    return AlertingService(settings).run()
