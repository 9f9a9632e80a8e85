"""The one runner of the cdk CLI: `kinase synth/diff/deploy/destroy` and `kinase local up` go through it.

The CLI is the project-local `aws-cdk@^2.1148` (`npm ci`), never a global one: npm's `latest` tag
(3.0.0) is an older build that cannot read the cloud assembly this aws-cdk-lib writes. The CDK app
runs under this interpreter (`--app`), so it sees the same virtual environment as `kinase`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path

from infra import naming
from kinase_cli import paths
from kinase_cli.aws.target import Target
from kinase_cli.runners import proc
from kinase_cli.ui.errors import KinaseError

MIN_VERSION = (2, 1148)
INSTALL_HINT = "run `npm ci` in the project root: it installs aws-cdk@^2.1148 into node_modules/"
INFRA_DIR = paths.PROJECT_ROOT / "infra"
QUIET_ENV = {
    "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    "NODE_NO_WARNINGS": "1",  # Node's process warnings (the AWS SDK's NodeVersionSupportWarning, deprecations)
    "CDK_DISABLE_CLI_TELEMETRY": "true",
}


def executable() -> str:
    path = os.environ.get("KINASE_CDK") or str(paths.PROJECT_ROOT / "node_modules" / ".bin" / "cdk")
    if not os.path.isfile(path):
        raise KinaseError(f"the cdk CLI was not found at {path}", INSTALL_HINT)
    return path


@cache
def checked_executable() -> str:
    """The cdk CLI, after checking it is 2.x and at least 2.1148."""
    path = executable()
    version = _installed_version(path)
    if version is None:
        result = proc.run([path, "--version"], env={**os.environ, **QUIET_ENV}, check=False, hint=INSTALL_HINT)
        if result.returncode != 0:
            raise KinaseError(f"`{path} --version` failed: {result.output.strip()[-200:]}", INSTALL_HINT)
        version = result.output.strip()
    match = re.search(r"^(\d+)\.(\d+)\.(\d+)", version, re.M)
    if not match:
        raise KinaseError(f"cannot tell the version of the cdk CLI at {path}: {version[-200:]}", INSTALL_HINT)
    major, minor = int(match[1]), int(match[2])
    if major != MIN_VERSION[0] or minor < MIN_VERSION[1]:
        raise KinaseError(
            f"cdk CLI {match[0]} at {path} is not supported (need 2.x, at least {MIN_VERSION[0]}.{MIN_VERSION[1]})",
            INSTALL_HINT,
        )
    return path


def _installed_version(path: str) -> str | None:
    """The version in the npm package.json beside the CLI: no second Node.js start-up (~1 s) per command."""
    package = Path(path).resolve().parent.parent / "package.json"
    try:
        meta = json.loads(package.read_text())
    except (OSError, ValueError):
        return None
    return meta.get("version") if meta.get("name") == "aws-cdk" else None


def cloud_assembly_dir(target: Target) -> Path:
    """Per environment, under KINASE_HOME: concurrent runs for different targets never share one."""
    return paths.env_dir(target.env, target.local) / "cdk.out"


def run(
    target: Target,
    args: Sequence[str],
    *,
    on_line: Callable[[str], None] | None = None,
    output_dir: Path | None = None,
    what: str = "cdk",
    hint: str | None = None,
    check: bool = True,
    context: Mapping[str, str] | None = None,
) -> proc.Result:
    """`cdk ARGS` on the kinase app for `target`, its environment from `target.child_env()`.

    `context`: more `--context KEY=VALUE` for the app (infra/naming.py CONTEXT_*), besides the environment.
    """
    extra = [arg for key, value in sorted((context or {}).items()) for arg in ("--context", f"{key}={value}")]
    argv = [
        checked_executable(),
        *args,
        "--app",
        f"{shlex.quote(sys.executable)} app.py",
        "--output",
        str(output_dir or cloud_assembly_dir(target)),
        "--context",
        f"{naming.CONTEXT_ENV}={target.env}",
        *extra,
        "--no-notices",
        "--no-version-reporting",
    ]
    env = {**target.child_env(), **QUIET_ENV}
    path = log_file(target, args[0])
    with open(path, "w", encoding="utf-8") as log:

        def line(text: str) -> None:
            log.write(text + "\n")
            log.flush()
            if on_line:
                on_line(text)

        full = f"the full cdk output is in {path}"
        return proc.run(argv, env=env, cwd=INFRA_DIR, on_line=line, what=what, hint=f"{hint}; {full}" if hint else full, check=check)


VERBOSE_ENV = "KINASE_VERBOSE"  # set by `kinase --verbose`: stream cdk's whole output instead of a summary


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def log_file(target: Target, command: str) -> Path:
    """Where the whole output of the last `cdk COMMAND` for the target's environment is kept (progress shows a summary)."""
    return paths.env_dir(target.env, target.local) / f"cdk-{command}.log"


def bootstrap(target: Target, account: str, region: str, on_line: Callable[[str], None] | None = None) -> proc.Result:
    return run(target, ["bootstrap", f"aws://{account}/{region}"], on_line=on_line, what="cdk bootstrap")
