"""The kinase CDK app: `cdk synth -c env=NAME` (the `kinase` CLI runs this for you)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra import naming
from infra.stacks import build, new_app

app = new_app()
build(
    app,
    app.node.try_get_context(naming.CONTEXT_ENV) or naming.DEFAULT_ENV,
    input_buckets=naming.split_list(app.node.try_get_context(naming.CONTEXT_INPUT_BUCKETS)),
    image_digest=app.node.try_get_context(naming.CONTEXT_IMAGE_DIGEST) or None,
    gpu_instance_type=app.node.try_get_context(naming.CONTEXT_GPU_INSTANCE_TYPE) or None,
    gpu_image_digest=app.node.try_get_context(naming.CONTEXT_GPU_IMAGE_DIGEST) or None,
)
cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
app.synth()
