"""Subprocess runners: one for every child process (proc), and the cdk CLI on top of it."""
