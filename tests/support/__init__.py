"""Helpers shared by the test modules (not test modules themselves: nothing here is collected).

env.py      REDIS_URL (TEST_REDIS_URL, so parallel suites use their own database)
metrics.py  one way to read a metric: in-process (`local_metric`) or off /metrics (`scrape`)
waiting.py  `wait_until`: wait for a condition, never a fixed sleep
mjpeg.py    a real MJPEG-over-HTTP camera
links.py    a link of shared/bus/links.py on a free port
pipeline.py the launcher as a process, and the frames a file source yields
sessions.py a session's frames written to Redis as the aggregator writes them
"""
