#!/usr/bin/env python3
"""Re-vendor GOV.UK Frontend (for the web app) and axe-core (for the browser tests).

Usage: python3 scripts/fetch-assets.py   (needs npm and the npm registry; writes nothing else)

The results are committed: they ship inside the wheel, and CI does not run this script.

- GOV.UK Frontend is pinned to the version govuk-frontend-jinja 4.1 supports (its README's
  compatibility table). Into dhr_workflow/web/static/govuk/ go the minified CSS and JS (an ES
  module), assets/images/, assets/manifest.json (and assets/rebrand/ where a release has one).
  The GDS Transport fonts are left out: they may be used on service.gov.uk only. Their
  @font-face rules and licence comment are removed from the CSS and "GDS Transport" is dropped
  from every font-family, so browsers use the Arial fallback and never request a font file.
  Root-relative url(/assets/...) references become url(assets/...), which resolves next to the
  stylesheet wherever static/govuk/ is mounted (the app serves it at /static/govuk/).
- axe-core's axe.min.js goes to tests/vendor/.

Each destination gets a VERSION file (version, npm tarball integrity, what was changed) and
the upstream licence. Running the script twice gives byte-identical files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

GOVUK_FRONTEND = "govuk-frontend@6.3.0"
AXE_CORE = "axe-core@4.14.1"

ROOT = Path(__file__).resolve().parent.parent
GOVUK_DEST = ROOT / "dhr_workflow" / "web" / "static" / "govuk"
AXE_DEST = ROOT / "tests" / "vendor"

# The govuk-frontend npm tarball carries no licence file; package.json says "MIT" and the
# repository's LICENSE.txt is the standard MIT text below.
GOVUK_MIT_LICENCE = """\
The MIT License (MIT)

Copyright (C) 2017 Crown Copyright (Government Digital Service)

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def fail(message: str) -> None:
    sys.exit(f"fetch-assets: {message}")


def npm_pack(spec: str, workdir: Path) -> tuple[Path, dict[str, str]]:
    """`npm pack` one exact version into workdir; return the tarball and npm's metadata."""
    out = subprocess.run(
        ["npm", "pack", "--json", "--silent", spec],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    info = json.loads(out)[0]
    tarball = workdir / info["filename"]
    # npm verified the download; check the file on disk against the integrity it reports.
    algo, _, expected = info["integrity"].partition("-")
    if algo != "sha512":
        fail(f"{spec}: unexpected integrity algorithm {algo}")
    actual = base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
    if actual != expected:
        fail(f"{spec}: tarball sha512 {actual} does not match npm's {expected}")
    wanted = spec.rpartition("@")[2]
    if info["version"] != wanted:
        fail(f"{spec}: npm packed {info['version']}")
    return tarball, info


def unpack(tarball: Path, into: Path) -> Path:
    with tarfile.open(tarball) as tar:
        tar.extractall(into, filter="data")
    return into / "package"


def rewrite_css(css: str) -> str:
    # The font licence comment and the @font-face rules for GDS Transport.
    css, n = re.subn(r"/\*![^*]*Margaret Calvert.*?\*/", "", css, flags=re.S)
    if n != 1:
        fail(f"expected one GDS Transport licence comment in the CSS, found {n}")
    css, n = re.subn(
        r"@font-face\s*\{[^}]*font-family:\s*[\"']?GDS Transport[\"']?\s*;[^}]*\}", "", css
    )
    if n == 0:
        fail("no GDS Transport @font-face rule found in the CSS: check the new release")
    # "GDS Transport",arial,sans-serif -> arial,sans-serif
    css = re.sub(r"[\"']?GDS Transport[\"']?\s*,\s*", "", css)
    # Root-relative asset URLs -> relative to the stylesheet.
    css = re.sub(r"url\(([\"']?)/assets/", r"url(\1assets/", css)
    # The source map is not vendored.
    css = re.sub(r"/\*# sourceMappingURL=[^*]*\*/\s*$", "", css)
    return css.rstrip() + "\n"


def check_css(css: str, dest: Path) -> None:
    for bad in ("GDS Transport", "@font-face", "/fonts/", ".woff", "sourceMappingURL"):
        if bad in css:
            fail(f"the rewritten CSS still contains {bad!r}")
    for url in re.findall(r"url\(([\"']?)([^)\"']*)\1\)", css):
        target = url[1]
        if target.startswith("data:") or target.startswith("#"):
            continue
        if target.startswith("/") or "://" in target:
            fail(f"the rewritten CSS still has a non-relative url({target})")
        if not (dest / target).is_file():
            fail(f"the CSS references {target}, which was not vendored")


def vendor_govuk(pkg: Path, info: dict[str, str]) -> None:
    dist = pkg / "dist" / "govuk"
    if GOVUK_DEST.exists():
        shutil.rmtree(GOVUK_DEST)
    (GOVUK_DEST / "assets").mkdir(parents=True)

    shutil.copytree(dist / "assets" / "images", GOVUK_DEST / "assets" / "images")
    shutil.copy2(dist / "assets" / "manifest.json", GOVUK_DEST / "assets" / "manifest.json")
    if (dist / "assets" / "rebrand").is_dir():
        shutil.copytree(dist / "assets" / "rebrand", GOVUK_DEST / "assets" / "rebrand")

    css = rewrite_css((dist / "govuk-frontend.min.css").read_text(encoding="utf-8"))
    check_css(css, GOVUK_DEST)
    (GOVUK_DEST / "govuk-frontend.min.css").write_text(css, encoding="utf-8")

    js = (dist / "govuk-frontend.min.js").read_text(encoding="utf-8")
    js = re.sub(r"//# sourceMappingURL=\S*\s*$", "", js).rstrip() + "\n"
    if "export{" not in js or "initAll" not in js:
        fail("govuk-frontend.min.js is no longer the ES module exporting initAll")
    (GOVUK_DEST / "govuk-frontend.min.js").write_text(js, encoding="utf-8")

    licence = next((p for p in pkg.glob("LICEN[CS]E*") if p.is_file()), None)
    text = licence.read_text(encoding="utf-8") if licence else GOVUK_MIT_LICENCE
    (GOVUK_DEST / "LICENSE").write_text(text, encoding="utf-8")

    (GOVUK_DEST / "VERSION").write_text(
        f"""\
package: {info["name"]}
version: {info["version"]}
tarball: {info["filename"]}
integrity: {info["integrity"]}
shasum: {info["shasum"]}
license: MIT (LICENSE)
fetched by: scripts/fetch-assets.py (npm pack {info["name"]}@{info["version"]})
from: package/dist/govuk/
changes:
  - assets/fonts left out (GDS Transport may be used on service.gov.uk only)
  - govuk-frontend.min.css: GDS Transport @font-face rules and their licence comment
    removed, "GDS Transport" dropped from font-family lists (Arial fallback), url(/assets/...)
    rewritten to url(assets/...) so it resolves next to the stylesheet, source map comment
    removed
  - govuk-frontend.min.js: source map comment removed
""",
        encoding="utf-8",
    )


def vendor_axe(pkg: Path, info: dict[str, str]) -> None:
    AXE_DEST.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pkg / "axe.min.js", AXE_DEST / "axe.min.js")
    shutil.copy2(pkg / "LICENSE", AXE_DEST / "LICENSE")
    if (pkg / "LICENSE-3RD-PARTY.txt").is_file():
        shutil.copy2(pkg / "LICENSE-3RD-PARTY.txt", AXE_DEST / "LICENSE-3RD-PARTY.txt")
    (AXE_DEST / "VERSION").write_text(
        f"""\
package: {info["name"]}
version: {info["version"]}
tarball: {info["filename"]}
integrity: {info["integrity"]}
shasum: {info["shasum"]}
license: MPL-2.0 (LICENSE; bundled third-party code: LICENSE-3RD-PARTY.txt)
fetched by: scripts/fetch-assets.py (npm pack {info["name"]}@{info["version"]})
files: axe.min.js, unchanged
""",
        encoding="utf-8",
    )


def main() -> None:
    if shutil.which("npm") is None:
        fail("npm is not installed (Debian: apt-get install npm)")
    with tempfile.TemporaryDirectory(prefix="fetch-assets-") as tmp:
        work = Path(tmp)
        govuk_tgz, govuk_info = npm_pack(GOVUK_FRONTEND, work)
        axe_tgz, axe_info = npm_pack(AXE_CORE, work)
        vendor_govuk(unpack(govuk_tgz, work / "govuk"), govuk_info)
        vendor_axe(unpack(axe_tgz, work / "axe"), axe_info)
    for dest in (GOVUK_DEST, AXE_DEST):
        print(f"wrote {dest.relative_to(ROOT)}/")
        for path in sorted(p for p in dest.rglob("*") if p.is_file()):
            print(f"  {path.relative_to(dest)}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
