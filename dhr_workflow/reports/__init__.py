"""Reports for the partnership board and oversight bodies: one review or all open ones, as PDF,
XLSX, HTML or CSV, and a family-safe variant.

data.py    what a report says, read from the store, the ledger and the audit log (the RAG,
           implementation-rate, chasing and trend rules are written down there)
charts.py  the charts as SVG (and PNG for the spreadsheet)
html.py    the HTML document and its templates (templates/); the family variant
pdf.py     the HTML laid out by WeasyPrint
xlsx.py    the spreadsheet (openpyxl, write-only)
csv.py     the action rows in the schema of docs/report-schema.md
build.py   one review at a time into the writer of the format; the file put in place whole
attach.py  the PDF the scheduled partnership report email carries, within its size cap
"""

from __future__ import annotations

from dhr_workflow.reports.build import (
    FAMILY_FORMATS,
    FORMATS,
    MEDIA_TYPES,
    Built,
    file_name,
    record,
    write,
)
from dhr_workflow.reports.data import Request, default_since, scope_words

__all__ = [
    "FAMILY_FORMATS",
    "FORMATS",
    "MEDIA_TYPES",
    "Built",
    "Request",
    "default_since",
    "file_name",
    "record",
    "scope_words",
    "write",
]
