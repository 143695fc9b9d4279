"""What ``/metrics`` serves: counters and histograms of what this process did
(:mod:`~orchestrator.metrics.instruments`), and figures read from the database and the broker
at scrape time (:mod:`~orchestrator.metrics.collector`)."""
