"""Earful's Faust Prometheus sensor: its cache of labelled metrics must not disturb the sensor as a
mode.Service, which stops the child services it keeps (a stop that fails logs an error per child)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from faust.sensors.prometheus import FaustMetrics
from faust.types import TP
from prometheus_client import CollectorRegistry

from earful.core.kafka import PrometheusMonitor


def test_a_monitor_that_saw_partitions_stops_without_errors(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        monitor = PrometheusMonitor(metrics=FaustMetrics.create(CollectorRegistry(), "t"))
        await monitor.start()
        for partition in range(3):
            monitor.track_tp_end_offset(TP("earful.mentions.raw.v1", partition), 10)
        await monitor.stop()

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
