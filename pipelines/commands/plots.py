"""``interir-bench plots show|diff [ARGS]``: ``dvc plots`` with the Vega libraries inside the page, so it renders
offline.

``dvc plots show`` writes an HTML page that loads vega, vega-lite and vega-embed from a public CDN: without a
network the page stays blank. This command passes ``dvc plots`` an HTML template that carries those libraries
inline, taken from the ``vl-convert-python`` package (its ``javascript_bundle()``), and otherwise forwards every
argument: ``interir-bench plots show``, ``interir-bench plots diff HEAD~1``, ``interir-bench plots show -o out``.
The plots are declared in dvc.yaml (training loss per run; MDIR PSNR per degradation combination per run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipelines.common.env import UserError
from pipelines.common.files import write_text

TEMPLATE = Path(".dvc/tmp/plots-offline.html")

# dvc_render fills {plot_divs} and {scripts} by plain string replacement, so the bundle's braces need no escaping;
# {scripts} (the CDN tags) stays after the inline bundle, which has already defined vegaEmbed when they fail.
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <title>DVC plots (offline)</title>
    <script>BUNDLE</script>
    {scripts}
    <style>table { border-spacing: 15px; }</style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def offline_template(path: Path = TEMPLATE) -> Path:
    """Write (once per vl-convert version) the DVC HTML template with the Vega libraries inline."""
    import vl_convert

    stamp = f"<!-- vega {vl_convert.get_vega_version()} -->\n"
    if path.is_file() and path.read_text().startswith(stamp):
        return path
    write_text(path, stamp + PAGE.replace("BUNDLE", vl_convert.javascript_bundle()))
    return path


def main(argv: list[str] | None = None) -> int:
    argv = list(argv or [])
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] not in ("show", "diff"):
        raise UserError(f"unknown plots command {argv[0]!r} (show or diff)")
    template = offline_template()
    return subprocess.call(["dvc", "plots", argv[0], "--html-template", str(template), *argv[1:]])


if __name__ == "__main__":
    from pipelines.common import entry

    sys.exit(entry.run("plots", main))
