"""Fixtures of the infrastructure tests: each configuration of the CDK app is synthesized once per session.

A synthesis with cdk-nag takes seconds (jsii runs the CDK in a node process); the template, nag and
cfn-lint tests of one configuration all read the same one.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from support.cdk import Synthesis, synth_with_nag


@pytest.fixture(scope="session")
def synthesis(tmp_path_factory) -> Callable[..., Synthesis]:
    """`synthesis(env, **options)`: `infra.stacks.build(app, env, **options)` synthesized with cdk-nag, cached by its arguments."""
    from infra.stacks import build

    done: dict[str, Synthesis] = {}

    def synthesized(env: str, **options) -> Synthesis:
        key = repr((env, sorted(options.items())))
        if key not in done:
            outdir = tmp_path_factory.mktemp("cdk.out")
            templates, nag = synth_with_nag(outdir, lambda app: build(app, env, **options))
            done[key] = Synthesis(templates, nag, outdir)
        return done[key]

    return synthesized
