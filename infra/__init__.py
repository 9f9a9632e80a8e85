"""The kinase CDK app. `naming` is importable without aws_cdk; the stacks need it."""
