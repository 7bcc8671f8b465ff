"""A link of shared/bus/links.py on a free loopback port, for a test that plays one side of it."""

from __future__ import annotations

from shared.bus.links import BY_NAME
from shared.ops.ports import free_ports


def link(name: str) -> tuple[str, str, str]:
    """(producer spec, consumer spec, endpoint) of link `name` on a free port."""
    spec = BY_NAME[name]
    port = free_ports(1)[0]
    return spec.out_spec(port=port), spec.in_spec(port=port), f"tcp://127.0.0.1:{port}"
