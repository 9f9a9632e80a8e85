"""Workflows that commands share (deploying, tasks, the local stack, the demo), below the thin command modules."""
