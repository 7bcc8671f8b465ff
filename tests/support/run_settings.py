"""`engagement run`'s typed settings for a test: every setting at its default (no environment, no
config file), with the few a test changes (by setting name: each part of the run that takes it)."""

from __future__ import annotations

import argparse
from typing import Any

from services.launcher.launch_settings import LaunchSettings, resolve_run


def run_settings_with(**changes: Any) -> LaunchSettings:
    settings = resolve_run(argparse.Namespace(), env={})
    settings.set(**changes)
    return settings
