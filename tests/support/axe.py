"""axe-core (the accessibility engine) for the browser tests: from the npm registry with npm's
own client, unpacked once into a cache (AXE_CACHE, default .cache/axe-core/<version>/), and
injected into the page under test by Playwright. Never served by the service: the pages
load only their own /static files."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from shared.ops.config import REPO_ROOT

AXE_VERSION = "4.14.1"
CACHE = Path(os.environ.get("AXE_CACHE", REPO_ROOT / ".cache" / "axe-core")) / AXE_VERSION
BLOCKING = ("serious", "critical")  # the bar: none of these on any page


def axe_script() -> str:
    """axe.min.js's text, fetched (`npm pack`) on first use."""
    target = CACHE / "axe.min.js"
    if not target.is_file():
        npm = shutil.which("npm")
        assert npm, "npm is needed once to fetch axe-core (apt-get install npm)"
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run([npm, "pack", f"axe-core@{AXE_VERSION}", "--pack-destination", tmp],
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"npm pack axe-core@{AXE_VERSION} failed: {done.stderr.strip()[-500:]}"
            [tarball] = Path(tmp).glob("axe-core-*.tgz")
            with tarfile.open(tarball) as tar:
                member = tar.extractfile("package/axe.min.js")
                assert member is not None, "axe-core's package has no axe.min.js"
                partial = target.with_suffix(".part")
                partial.write_bytes(member.read())
                partial.replace(target)
    return target.read_text(encoding="utf-8")


def with_axe(page):
    """The page with axe-core in every document it loads: an init script goes in through the
    DevTools protocol, which the page's Content-Security-Policy does not govern (an inline
    <script> would be refused, as it should)."""
    page.add_init_script(script=axe_script())
    return page


def axe_violations(page) -> list[dict]:
    """Runs axe-core on the page as it is now (its default rules: WCAG 2.0/2.1 A and AA and best
    practices); returns the serious and critical violations, each with its rule, impact and the
    first nodes' targets."""
    result = page.evaluate("""() => axe.run(document, {resultTypes: ['violations']})
        .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                           targets: v.nodes.map(n => n.target.join(' ')).slice(0, 5)})))""")
    return [v for v in result if v["impact"] in BLOCKING]
