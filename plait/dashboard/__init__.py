"""SEEING it: the live dashboard, a web page served by a client of the head like a driver.

    browser --HTTP (token, cookie)--> app.py (Starlette, uvicorn) --Source--> head (ZeroMQ)

``plait.init(dashboard=True)``, ``plait start --head --dashboard`` and ``plait dashboard
--address HOST:PORT`` start ``python -m plait.dashboard`` (server.py) and print its URL.
Its dependencies are an extra: ``pip install -e ".[dashboard]"``. Modules: guard (who may
see it), source (asking the head), view (what the pages show), plan (the Plan page's
drawing), metrics (/metrics for Prometheus), app (routes), server (the process). Drivers
and the CLI start it through plait/executor/driver/dashboard.py, by module name.
"""
