"""python -m sample_app: serve the app on APP_HOST:APP_PORT, in one process (WORKERS=1, the default, and the only
value sticky and replication accept: their sessions live in that process's memory), or in WORKERS processes
sharing the port under a parent that keeps them running (sample_app/serve.py).

SIGTERM drains the node before it stops (sample_app/serve.py): no request a load balancer sends it fails.

A missing or invalid setting prints one line naming it and exits with status 2. --help lists every setting.
"""

from __future__ import annotations

import logging
import sys

from .settings import SettingError, Settings, describe


def main(argv: list[str]) -> int:
    if "-h" in argv or "--help" in argv:
        print(__doc__.strip() + "\n\nSettings (environment variables):\n" + describe())
        return 0
    try:
        settings = Settings.from_env()
    except SettingError as error:
        print(f"sample_app: invalid setting {error}", file=sys.stderr)
        return 2
    from .app import create_app
    from .serve import serve

    process = " [%(process)d]" if settings.workers > 1 else ""  # which worker (or the parent) says it
    logging.basicConfig(
        level=settings.log_level.upper(), format=f"%(asctime)s %(levelname)s %(name)s{process}: %(message)s"
    )
    if settings.workers > 1:
        from .serve import serve_workers

        return serve_workers(lambda: create_app(settings), settings)  # each worker builds its app, and its store
    serve(create_app(settings), settings)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
