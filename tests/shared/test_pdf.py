"""shared/ops/pdf.py: a page printed to PDF by the real headless Chromium, and a browser that
prints nothing said in one line."""

from __future__ import annotations

import shutil

import pytest

from shared.ops.pdf import PdfError, find_chromium, html_to_pdf

PAGE = "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><style>@page { size: A4 }</style></head>" \
       "<body><h1>Lesson summary</h1></body></html>"


def test_a_page_prints_to_an_a4_pdf(tmp_path):
    assert find_chromium(), "Debian's chromium is not installed (scripts/setup.sh installs it)"
    out = html_to_pdf(PAGE, tmp_path / "out" / "summary.pdf")
    data = out.read_bytes()
    assert data[:5] == b"%PDF-" and b"/MediaBox [0 0 594.9" in data  # A4 is 595 x 842 points


def test_a_browser_that_prints_nothing_is_one_clear_error(tmp_path):
    false = shutil.which("false")
    with pytest.raises(PdfError, match=r"^Chromium printed no PDF \(exit 1"):
        html_to_pdf(PAGE, tmp_path / "summary.pdf", chromium=false)
    assert not (tmp_path / "summary.pdf").exists()
