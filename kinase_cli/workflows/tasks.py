"""Worker tasks as kinase reports them: one summary shape for `run-task`, `status` and the local runs."""

from __future__ import annotations

from kinase_cli.ui import console
from worker.contract import iso


def task_summary(task: dict, container_name: str) -> dict:
    """An ECS task (DescribeTasks) as a snake_case summary; the worker's exit code is its container's."""
    containers = [c for c in task.get("containers", []) if c.get("name") == container_name] or task.get("containers", [])
    main = containers[0] if containers else {}
    return {
        "task_id": task["taskArn"].rsplit("/", 1)[-1],
        "task_arn": task["taskArn"],
        "last_status": task.get("lastStatus"),
        "exit_code": main.get("exitCode"),
        "stop_code": task.get("stopCode"),
        "stopped_reason": task.get("stoppedReason") or main.get("reason"),
        "cpu": task.get("cpu"),
        "memory": task.get("memory"),
        "started_at": iso(task["startedAt"]) if task.get("startedAt") else None,
        "stopped_at": iso(task["stoppedAt"]) if task.get("stoppedAt") else None,
    }


def local_summary(record: dict) -> dict:
    """A local worker run (kinase_cli/local/runs.py) in the same shape as an ECS task's summary."""
    return {
        "task_id": record["taskId"],
        "task_arn": None,
        "last_status": record["lastStatus"],
        "exit_code": record.get("exitCode"),
        "stop_code": None,
        "stopped_reason": record.get("stoppedReason"),
        "cpu": None,
        "memory": None,
        "started_at": record.get("startedAt"),
        "stopped_at": record.get("stoppedAt"),
    }


def exit_code(tasks: list[dict], container_name: str) -> int:
    """The first non-zero worker exit code; 1 for a task whose worker never exited (e.g. the image did not pull)."""
    code = 0
    for task in tasks:
        summary = task_summary(task, container_name)
        reason = f" ({summary['stopped_reason']})" if summary["stopped_reason"] else ""
        if summary["exit_code"] is None:
            console.err.print(f"task {summary['task_id']} stopped without a worker exit code{reason}", style="red", highlight=False)
            code = code or 1
        else:
            console.info(f"task {summary['task_id']} stopped: exit code {summary['exit_code']}{reason}")
            code = code or int(summary["exit_code"])
    return code
