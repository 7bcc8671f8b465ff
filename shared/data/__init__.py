"""The data layer: what the product keeps and hands on, and nothing about how it travels.

Levels and their names, the running totals and their Redis store, the teacher's marks, the
aggregator's journal, the report's outbox and envelope, exports of a report (and the lesson as
a whole: class line, alerts, the printable summary's page), rosters, model cards and the crop
they record. Pure Python and Redis; imports no other layer of shared/.
"""
