"""The bus layer: how services talk to each other.

The messages (msgspec Structs, the wire format), the table of links (who sends what to whom),
ZeroMQ sockets with CURVE and peer checks, the acknowledgement window, reconnect back-off and
the Prometheus series every sender and receiver counts. Imports only shared.data.
"""
