"""Starting the local stack: `kinase local up` and `kinase demo` start it the same way."""

from __future__ import annotations

from kinase_cli.aws.target import LOCAL_ACCOUNT, LOCAL_REGION, Target
from kinase_cli.local import stack
from kinase_cli.runners import cdk
from kinase_cli.ui import console


def start(port: int, kvs_port: int) -> dict:
    """Start the moto server and the Kinesis Video endpoint, bootstrap cdk into them; returns the stack's state.

    Does nothing but report when the stack already runs and is bootstrapped.
    """
    state = stack.running_state()
    if state and state.get("bootstrapped"):
        console.info(f"the local stack is already running: {state['aws_endpoint']} (Kinesis Video {state['kinesis_video_endpoint']})")
        return state
    if state is None:
        stack.stop()  # clears a stale record; stops only processes that are still ours
        stack.check_ports(port, kvs_port)
        console.step(f"starting moto on localhost:{port} and the Kinesis Video endpoint on localhost:{kvs_port}")
        state = stack.start(port, kvs_port)
    console.step("bootstrapping cdk into the local stack")
    cdk.bootstrap(Target(local=True), LOCAL_ACCOUNT, LOCAL_REGION, on_line=_quiet_progress)
    state["bootstrapped"] = True
    stack.save(state)
    console.info(f"local stack up: AWS {state['aws_endpoint']}, Kinesis Video {state['kinesis_video_endpoint']}")
    return state


def _quiet_progress(line: str) -> None:
    if "✅" in line or "❌" in line or "rror" in line:
        console.info(line.strip())
