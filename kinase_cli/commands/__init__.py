"""Command modules; each exposes `register(app)` and keeps heavy imports inside its functions."""

from kinase_cli.commands import (
    bootstrap,
    cost,
    demo,
    dlq,
    events,
    fleet,
    image,
    local,
    logs,
    notify,
    rules,
    stacks,
    status,
    stream,
    tasks,
    watch,
)

COMMAND_MODULES = (demo, local, stacks, stream, fleet, image, tasks, watch, events, notify, dlq, rules, logs, status, cost, bootstrap)
