"""`earful alerting`: read settings, build the Faust app, run until SIGTERM."""

from __future__ import annotations

from earful.alerting.app import build
from earful.core.faust_service import run_faust_service
from earful.core.settings import Settings


def main(settings: Settings) -> int:
    return run_faust_service(build(settings), settings, "alerting")
