"""Known vulnerabilities in the installed dependencies (pip-audit), for scripts/test.sh.

Fails on any vulnerability not listed, with its reason, in scripts/pip-audit-ignore.txt. pip-audit
looks each package up in a vulnerability service reached through the package index; when that
service answers for none of them (a mirror without it, no network), nothing was audited: this
says so in capitals and does not fail the run, because the lookup — not the code — is what failed.
If it answers for some packages but not others, the ones it could not look up are listed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv" / "bin"


def ignored() -> list[str]:
    lines = (ROOT / "scripts" / "pip-audit-ignore.txt").read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]


def main() -> int:
    # Accord itself is installed editable and is on no index: audit everything else, as installed.
    frozen = subprocess.run(
        [str(VENV / "python"), "-m", "pip", "freeze", "--all", "--exclude-editable"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write(frozen)
        requirements.flush()
        command = [str(VENV / "pip-audit"), "-f", "json", "--progress-spinner", "off"]
        command += ["--disable-pip", "--no-deps", "-r", requirements.name]
        for vuln in ignored():
            command += ["--ignore-vuln", vuln]
        result = subprocess.run(command, check=False, capture_output=True, text=True)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(result.stderr, file=sys.stderr)
        print("!! pip-audit did not run (no report above)", file=sys.stderr)
        return 1
    deps = report.get("dependencies", [])
    skipped = [d for d in deps if d.get("skip_reason")]
    vulnerable = [d for d in deps if d.get("vulns")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed release"
            print(f"!! {dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixes})")
    audited = len(deps) - len(skipped)
    print(f"pip-audit: {audited} of {len(deps)} installed packages audited, {len(vulnerable)} vulnerable")
    if vulnerable:
        print("!! Upgrade, or list the id in scripts/pip-audit-ignore.txt with its reason.", file=sys.stderr)
        return 1
    if deps and not audited:
        print(
            "!! NOTHING WAS AUDITED: the vulnerability service answered for none of the packages"
            f" ({skipped[0]['skip_reason']}). Run pip-audit where it is reachable.",
            file=sys.stderr,
        )
        return 0
    for dep in skipped:
        print(f"!! not audited: {dep['name']} {dep['version']}: {dep['skip_reason']}", file=sys.stderr)
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
