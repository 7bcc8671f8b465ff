"""The Redis totals schema, for every service that reads it.

Placeholder until issue 13 moves services/aggregator/store.py here: the web service
imports `shared.totals` only, so it never imports another service's folder. At merge the
move replaces this file.
"""

from services.aggregator.store import LEVELS, Store  # noqa: F401  (re-exported)
