"""Generate the operator's least-privilege IAM policy from the AWS calls `kinase` made in a recorded run.

The e2e test tests/e2e/test_iam_calls.py records every call (KINASE_RECORD_CALLS) of a run of the
operator's commands and keeps the file as calls.jsonl in its temporary directory (its failure names
the path); this prints the policy those calls need, or with --write puts it into the "Operator
permissions" section of docs/OPERATIONS.md. The mapping and generalisation live beside the test
(tests/support/iam_operator.py), which checks the documented policy against the same recording.

    .venv/bin/python scripts/operator_policy.py /tmp/pytest-of-$USER/.../calls.jsonl --write
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> None:
    from kinase_cli.aws.target import LOCAL_ACCOUNT
    from support.iam_actions import read, request
    from support.iam_operator import generate, write

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("record", type=Path, help="the recorded calls (JSON lines)")
    parser.add_argument("--write", action="store_true", help="replace the policy in docs/OPERATIONS.md")
    parser.add_argument("--account", default=LOCAL_ACCOUNT, help="the account of the recorded run")
    args = parser.parse_args()
    calls = [c for c in read(args.record) if c["principal"] == "cli"]
    policy = generate(request(c, account=args.account) for c in calls)
    if args.write:
        write(policy)
    else:
        print(json.dumps(policy, indent=2))


if __name__ == "__main__":
    main()
