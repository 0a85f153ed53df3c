"""Downloading a report: GET /report?format=pdf|xlsx|html|csv[&review=REF].

The same report as `dhr-workflow report`, cut to what the person may see (their scope: an
agency lead gets their agency's actions, a review's chair that review, coordinators and
partnership chairs everything). A review they may not see is a 404, as one that does not
exist. Each report made is audited (``report.generate``, the person as actor).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from dhr_workflow import reports
from dhr_workflow.errors import NotFound
from dhr_workflow.signin import Principal
from dhr_workflow.web.app import Hidden, Web

FORMAT_NAMES = {"pdf": "PDF", "xlsx": "Spreadsheet (XLSX)", "html": "Web page (HTML)",
                "csv": "Data (CSV)"}  # fmt: skip


def routes(web: Web) -> list[Route]:
    async def download(request: Request) -> Response:
        person = await web.require(request)
        fmt = request.query_params.get("format", "pdf")
        ref = request.query_params.get("review") or None
        if fmt not in reports.FORMATS:
            raise Hidden
        folder, name = await web.run(_build, web, person, ref, fmt)
        return FileResponse(
            folder / name,
            media_type=reports.MEDIA_TYPES[fmt],
            filename=name,
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    return [Route("/report", download)]


def _build(web: Web, person: Principal, ref: str | None, fmt: str) -> tuple[Path, str]:
    today = web.today()
    req = reports.Request(
        ref, today, reports.default_since(today), web.settings.tz, scope=person.scope
    )
    folder = Path(tempfile.mkdtemp(prefix="dhr-report-"))
    name = reports.file_name(ref, fmt, today)
    try:
        with web.store.reading() as s:
            reports.write(
                s, req, fmt, folder / name, partnership=web.settings.partnership,
                marking=web.settings.report_marking, scope_words=reports.scope_words(req.scope),
            )  # fmt: skip
    except NotFound:
        shutil.rmtree(folder, ignore_errors=True)
        raise Hidden from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    with web.store.transaction() as s:
        reports.record(s, req, fmt, now=web.now(), actor=person.email)
    return folder, name
