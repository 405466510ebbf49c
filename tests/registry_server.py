"""The schema registry tests run Earful's client against: the local stack's own
(earful_dev.stack.registry), which follows the subset of the Confluent Schema Registry REST API
that clients use. Tests set its authentication (`basic`, `bearer`), make it fail (`failing`), give
it TLS, and read the requests it got through `RegistryState`.
"""

from __future__ import annotations

from earful_dev.stack.registry import RegistryState, running_registry

__all__ = ["RegistryState", "running_registry"]
