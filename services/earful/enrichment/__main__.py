"""`earful enrichment`: read settings, load the models, build the Faust app, run until SIGTERM."""

from __future__ import annotations

from earful.core.faust_service import run_faust_service
from earful.core.settings import Settings
from earful.enrichment.app import build


def main(settings: Settings) -> int:
    return run_faust_service(build(settings), settings, "enrichment")
