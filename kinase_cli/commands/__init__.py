"""Command modules; each exposes `register(app)` and keeps heavy imports inside its functions."""

from kinase_cli.commands import (
    bootstrap,
    cost,
    demo,
    dlq,
    image,
    local,
    logs,
    stacks,
    status,
    stream,
    tasks,
    watch,
)

COMMAND_MODULES = (demo, local, stacks, stream, image, tasks, watch, dlq, logs, status, cost, bootstrap)
