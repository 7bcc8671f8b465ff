"""What two or more parts of the product share, in four layers; a layer imports only those below it.

    data    what the product keeps and hands on: levels, totals, marks, reports, journals, outboxes
    bus     how services talk: the messages, the links table, sockets, acknowledgements, metrics
    ops     how a service runs: settings, secrets, ports, CPU budget, weights, logs, the service loop
    vision  faces in pictures: detectors, the face mesh, the baseline rule, sliced search, screens

Nothing here imports a service, the command line (engagement/), the tools or the tests;
tests/test_architecture.py holds the order, by import statement and by string.
"""
