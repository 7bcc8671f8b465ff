"""The operations layer: how one service process runs on the box.

Settings (one table for flags, environment, config file and defaults, resolved into one typed
Struct per service: config.py, settings.py), secrets and their checks, ports, the CPU budget,
model weights and bundles on disk, logs, TensorFlow's GPU set-up, the service loop that puts a
service's links, metrics and settings together, and printing a page to PDF with the headless
Chromium. Imports shared.data and shared.bus.
"""
