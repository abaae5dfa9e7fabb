"""Put the web assets the Solara server would fetch from a CDN into its local cache.

The interactive view (``cartsim app``) is served by Solara, whose page loads a few npm packages
(``@widgetti/solara-vuetify3-app``, ``requirejs``, ``font-awesome``) from a CDN unless they are
in ``<prefix>/share/solara/cdn``. The ``solara-assets`` wheel fills that cache, but its newest
release can lag solara's (1.58.2 against solara 1.64, whose page wants
``@widgetti/solara-vuetify3-app@5.2.0``). This script adds what is missing with ``npm pack``, so
it needs ``npm`` and access to the npm registry: run it once while online (or through a registry
mirror), after which the view works offline; it does nothing for packages already there.

    python scripts/solara_offline_assets.py        # needs npm and the npm registry; idempotent
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


def needed_packages() -> list[str]:
    """``name@version`` of every CDN package Solara's page template refers to."""
    import solara.server

    template = Path(solara.server.__file__).parent / "templates" / "solara.html.j2"
    found = re.findall(r"\{\{cdn\}\}/((?:@[\w.-]+/)?[\w.-]+@[\w.-]+)/", template.read_text())
    from solara.server.settings import assets

    found += re.findall(r"^/?([\w.-]+@[\w.-]+)/", assets.fontawesome_path)
    return sorted(set(found))


def main() -> int:
    from solara.server.settings import assets

    cache = Path(assets.proxy_cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    for package in needed_packages():
        target = cache / package
        if target.is_dir() and any(target.iterdir()):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", package, "--silent"], cwd=tmp, check=True,
                           stdout=subprocess.DEVNULL)
            archive = next(Path(tmp).glob("*.tgz"))
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(tmp) / "package"), target)
        print(f"cached {package} in {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
