"""HTML to PDF with the headless Chromium the project already uses (its browser tests drive
Debian's `chromium`).

Why Chromium and not a Python PDF library: the summary is the same HTML and SVG a browser
shows, printed by the engine that renders the pages, so the PDF and the page cannot drift,
and no second layout engine (with its own CSS and SVG subset, as WeasyPrint or xhtml2pdf
have) is added to the box. The page is a local file with nothing to fetch; Chromium runs
with a throw-away profile, so two prints at once do not share one.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

PRINT_TIMEOUT_SECONDS = 60.0
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


class PdfError(RuntimeError):
    """The PDF could not be made; the message says why in one line."""


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def html_to_pdf(page: str, out: Path, chromium: str | None = None,
                timeout: float = PRINT_TIMEOUT_SECONDS) -> Path:
    """Prints the HTML `page` (self-contained) to `out` (A4, as its @page rule says)."""
    browser = chromium or find_chromium()
    if browser is None:
        raise PdfError("no Chromium on this machine to print the PDF (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="engagement-pdf-") as tmp:
        source = Path(tmp) / "summary.html"
        source.write_text(page, encoding="utf-8")
        partial = Path(tmp) / "summary.pdf"
        # --no-sandbox: root (CI, containers) cannot start Chromium's sandbox; the page is our own file.
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                   f"--user-data-dir={tmp}/profile", f"--print-to-pdf={partial}", source.as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise PdfError(f"Chromium did not print the PDF in {timeout:g} s") from None
        if not partial.is_file() or partial.stat().st_size == 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise PdfError(f"Chromium printed no PDF (exit {done.returncode}: {last})")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(partial), out)
    return out
