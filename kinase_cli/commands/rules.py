"""`kinase rules`: check a rules file (`kinase.rules/1`, docs/RULES.md), apply it to an environment, show the rules in force."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from kinase_cli.aws.target import Target
from kinase_cli.options import Json, with_target
from kinase_cli.ui import console, jsonout
from kinase_cli.ui.errors import KinaseError
from kinase_cli.ui.text import join, plain, visible

rules_app = typer.Typer(
    help="Lines, zones and alerts that turn detections into events (docs/RULES.md): check, apply, show.",
    no_args_is_help=True,
    epilog="Examples:\n\n  kinase rules check rules.yaml\n\n  kinase rules apply rules.yaml --local\n\n  kinase rules show --json",
)

File = Annotated[Path, typer.Argument(help="A rules file, YAML or JSON (schema kinase.rules/1).", show_default=False)]
Classes = Annotated[
    Optional[str],
    typer.Option(
        "--classes", help="Comma-separated class names of the model: a rule naming another class gets a warning.", show_default=False
    ),
]
Model = Annotated[
    Optional[Path],
    typer.Option("--model", help="An .onnx model whose class names rules are checked against (instead of --classes).", show_default=False),
]


def _read(path: Path):
    """The document in `path`; a file that cannot be read is one error line (exit 2)."""
    from worker import rules

    try:
        if path.is_dir():
            raise KinaseError(f"{visible(path, limit=200)} is a directory", "give a rules file (YAML or JSON)", exit_code=2)
        with open(path, "rb") as handle:
            data = handle.read(rules.MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise KinaseError(f"cannot read {visible(path, limit=200)}: {exc.strerror or exc}", exit_code=2) from None
    return rules.decode(data)


def _classes(classes: Optional[str], model: Optional[Path]) -> list[str] | None:
    if classes is not None and model is not None:
        raise KinaseError("give --classes or --model, not both", exit_code=2)
    if classes is not None:
        return [c.strip() for c in classes.split(",") if c.strip()]
    if model is None:
        return None
    if model.suffix != ".onnx":
        raise KinaseError(
            f"--model {visible(model, limit=200)}: class names are read from .onnx models", "pass --classes instead", exit_code=2
        )
    from worker.detector.base import names_from_metadata, onnx_metadata

    try:
        names = names_from_metadata(onnx_metadata(model))
    except OSError as exc:
        raise KinaseError(f"cannot read {visible(model, limit=200)}: {exc.strerror or exc}", exit_code=2) from None
    if not names:
        raise KinaseError(f"--model {visible(model, limit=200)} names no classes", "pass --classes instead", exit_code=2)
    return list(names.values())


def _problems(path: Path, *, streams: list[str] | None, classes: list[str] | None) -> tuple[object, list[str], list[str]]:
    """(document, errors, warnings) of a rules file; a text that is not a document is all errors."""
    from worker import rules

    try:
        doc = _read(path)
    except rules.RulesError as refused:
        return None, refused.errors, []
    found = rules.errors(doc)
    return doc, found, ([] if found else rules.warnings(doc, streams=streams, classes=classes))


def _say(kind: str, style: str, lines: list[str]) -> None:
    for line in lines:
        console.err.print(join((f"{kind}:", style), " ", plain(line, limit=500)), highlight=False, soft_wrap=True)


def _tell(*parts) -> None:
    """A diagnostic line on stderr, never parsed as markup (file names are the operator's, anything may be in them)."""
    console.err.print(join(*parts), highlight=False, soft_wrap=True)


def _counts(doc) -> dict:
    streams = doc["streams"] if isinstance(doc, dict) and isinstance(doc.get("streams"), dict) else {}
    entries = [e for e in streams.values() if isinstance(e, dict)]
    return {"streams": len(streams), **{kind: sum(len(e.get(kind) or ()) for e in entries) for kind in ("lines", "zones", "alerts")}}


def _refuse(path: Path, found: list[str], what: str) -> None:
    _say("error", "red", found)
    raise KinaseError(f"{visible(path, limit=200)}: {len(found)} error(s); {what}", "fix every line above; docs/RULES.md")


@rules_app.command(
    "check", epilog="Examples:\n\n  kinase rules check rules.yaml\n\n  kinase rules check rules.yaml --classes person,car --json"
)
def check(file: File, classes: Classes = None, model: Model = None, json_: Json = False) -> None:
    """Check a rules file without applying it: every error, one line each with its path (exit 1), and warnings.

    Needs no AWS: stream names are checked by `rules apply`, which knows the environment's streams.
    """
    doc, found, warned = _problems(file, streams=None, classes=_classes(classes, model))
    if json_:
        jsonout.emit("rules check", {"file": str(file), "valid": not found, "errors": found, "warnings": warned, "counts": _counts(doc)})
    _say("warning", "yellow", warned)
    if found:
        _refuse(file, found, "not valid")
    if not json_:
        counts = _counts(doc)
        _tell(
            plain(file, limit=200),
            f": valid {doc['schema']}: {counts['streams']} stream entr{'y' if counts['streams'] == 1 else 'ies'}, "
            f"{counts['lines']} line(s), {counts['zones']} zone(s), {counts['alerts']} alert(s)",
        )


def _store(target: Target):
    """The S3 client and the environment's frames bucket, where the rules are stored."""
    from kinase_cli.aws import outputs

    bucket = outputs.read(target, required=("storage",))["FramesBucketName"]
    return target.client("s3"), bucket


def _known_streams(target: Target) -> list[str]:
    from kinase_cli.aws import outputs
    from kinase_cli.workflows import streams as streams_workflow

    names = [row["name"] for row in streams_workflow.listing(target)]
    single = outputs.read(target).get("StreamName")
    return names + ([single] if single else [])


@rules_app.command("apply", epilog="Examples:\n\n  kinase rules apply rules.yaml\n\n  kinase rules apply rules.yaml --local --json")
@with_target
def apply(file: File, classes: Classes = None, model: Model = None, json_: Json = False, *, target: Target) -> None:
    """Store a rules file as the environment's next version and put it in force.

    A file with any error is refused whole (every error listed) and the rules in force stay. Workers pick
    up the new version without a restart. Versions are kept: `rules show` names the one in force.
    """
    from worker import rules
    from worker.contract import iso

    wanted = _classes(classes, model)
    doc, found, _ = _problems(file, streams=None, classes=None)
    if found:
        _refuse(file, found, "nothing applied, the rules in force stay")
    s3, bucket = _store(target)
    warned = rules.warnings(doc, streams=_known_streams(target), classes=wanted)
    _say("warning", "yellow", warned)
    applied_at = iso(time.time())
    try:
        version = rules.publish(s3, bucket, doc, applied_at)
    except rules.RulesConflict as exc:
        raise KinaseError(str(exc), "run `kinase rules show` and apply again if yours should win") from None
    if json_:
        jsonout.emit(
            "rules apply",
            {
                "version": version,
                "applied_at": applied_at,
                "bucket": bucket,
                "key": rules.version_key(version),
                "warnings": warned,
                "counts": _counts(doc),
            },
        )
        return
    _tell(
        "applied ", plain(file, limit=200), f" as rules v{version} of environment {target.env} (s3://{bucket}/{rules.version_key(version)})"
    )


@rules_app.command("show", epilog="Examples:\n\n  kinase rules show\n\n  kinase rules show --local --json | jq .data.version")
@with_target
def show(json_: Json = False, *, target: Target) -> None:
    """The rules in force in the environment: their version, when they were applied, and what they say."""
    from worker import rules

    s3, bucket = _store(target)
    try:
        current = rules.fetch_current(s3, bucket)
    except rules.RulesError as refused:
        raise KinaseError(f"the stored rules are not valid: {refused.errors[0]}", "apply a valid file with `kinase rules apply`") from None
    if json_:
        data = {"version": None, "applied_at": None, "rules": None}
        if current is not None:
            data = {"version": current.version, "applied_at": current.applied_at, "rules": current.doc}
        jsonout.emit("rules show", data)
        return
    if current is None:
        console.info(f"no rules applied in environment {target.env} (`kinase rules apply FILE`)")
        return

    def say(*parts) -> None:
        console.out.print(join(*parts), highlight=False, soft_wrap=True)

    say(f"rules v{current.version}, applied ", plain(current.applied_at, limit=60))
    for stream, entry in current.rules.streams.items():
        say("stream ", plain(stream, style="bold", limit=200))
        for line in entry.lines:
            ends = f"{_point(line.points[0])}-{_point(line.points[1])}"
            where = f"  {ends}  in side {_point(line.in_side)}  "
            hold = f"  far side {line.min_far_side_s:g} s  anchor {line.anchor}"
            say("  line ", plain(line.name, style="bold", limit=100), where, _classes_text(line.classes), hold)
        for zone in entry.zones:
            dwell = f"  dwell {zone.dwell_s:g} s" if zone.dwell_s is not None else ""
            corners = " ".join(_point(p) for p in zone.polygon)
            say(
                "  zone ",
                plain(zone.name, style="bold", limit=100),
                f"  {corners}  ",
                _classes_text(zone.classes),
                f"{dwell}  anchor {zone.anchor}",
            )
        for alert in entry.alerts:
            clip = f"  clip -{alert.clip.pre_s:g} s +{alert.clip.post_s:g} s" if alert.clip else ""
            say(
                f"  alert on {', '.join(alert.events)}  ",
                _classes_text(alert.classes),
                f"  min conf {alert.min_conf:g}  cooldown {alert.cooldown_s:g} s{clip}",
            )


def _point(p: tuple[float, float]) -> str:
    return f"({p[0]:g},{p[1]:g})"


def _classes_text(classes: tuple[str, ...] | None):
    return plain("classes " + ",".join(classes), limit=300) if classes else "all classes"


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")
