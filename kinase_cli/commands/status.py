"""Placeholder: filled by the issue that owns this command."""


def register(app):
    pass
