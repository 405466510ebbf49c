"""The SSRF guard of webhook deliveries: the shared address policy (`earful.core.addresses`) with
the webhook allow-list, EARFUL_WEBHOOK_ALLOWED_NETWORKS.

Receiver URLs come from configuration and may name any host, so every connection is checked on
the address actually connected to (a hostname that resolves, or re-resolves, to a private address
is refused), and literal addresses already when the configuration is loaded.
"""

from __future__ import annotations

from earful.core.addresses import AddressPolicy


class TargetPolicy(AddressPolicy):
    """Refuses webhook targets on private, loopback, link-local and other non-public addresses,
    unless a network of EARFUL_WEBHOOK_ALLOWED_NETWORKS contains them."""

    def __init__(self, allowed_networks: tuple[str, ...] = ()) -> None:
        super().__init__(allowed_networks, setting="EARFUL_WEBHOOK_ALLOWED_NETWORKS")
