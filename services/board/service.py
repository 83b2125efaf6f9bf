"""Entry point of the board: ``python -m board`` or ``plantstream board``."""

from __future__ import annotations

import signal
import threading
from typing import Any

from board.app import BoardServer
from plantstream.logs import setup_logging
from plantstream.settings import Settings


def main() -> None:
    s = Settings.from_env()
    log = setup_logging("board", s.log_level, s.log_format)
    server = BoardServer(s)
    users = server.board.users
    if not users.users():
        log.warning("no board users yet: add one with `plantstream board add-user NAME --tenant TENANT`",
                    extra={"users_file": str(users.path)})

    def stop(signum: int, _frame: Any) -> None:
        log.info("stopping on signal", extra={"signal": signal.Signals(signum).name})
        threading.Thread(target=server.httpd.shutdown, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    log.info("board listening", extra={"url": server.url, "users_file": str(users.path)})
    print(f"maintenance board on {server.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.board.stopping.set()
        server.httpd.server_close()
        server.board.feed.stop()
        log.info("board stopped")
