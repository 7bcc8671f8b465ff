"""Tools that are not services: the sample-video generator (`engagement make-sample`)."""
