"""Serving the interactive view (``simulation.viz.app``) with Solara, as ``cartsim app`` does."""

from __future__ import annotations

import os
import subprocess
import sys

#: the start of the warning Solara gives for a page not served as localhost
SOLARA_COOKIE_WARNING = "Cookies with samesite=none require https"


def serve_app(host: str = "localhost", port: int = 8765) -> int:
    """Serve the app at http://HOST:PORT/ until Ctrl-C (a ``solara run`` child process);
    returns its exit code."""
    command = [sys.executable, "-m", "solara", "run", "simulation.viz.app:page", "--host", host,
               "--port", str(port), "--production", "--no-open"]
    print(f"cartsim app: http://{host}:{port}/ (Ctrl-C to stop)", file=sys.stderr)
    # Solara warns on every page load served by another name than localhost that its session
    # cookie falls back to samesite=lax: it matters only when the view is embedded in an
    # iframe of another site, which cartsim app never is
    env = {**os.environ, "PYTHONWARNINGS": ",".join(filter(None, [
        os.environ.get("PYTHONWARNINGS"), f"ignore:{SOLARA_COOKIE_WARNING}:UserWarning"]))}
    return subprocess.call(command, env=env)
