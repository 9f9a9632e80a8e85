"""Starting and stopping the local stack: `kinase local up` and `kinase demo` start it the same way.

Starting is also recovering: a server that died is started again (only that one), and since both
keep everything in memory, the environments that were deployed into the stack are deployed again
(unless `redeploy` is off, in which case one line says what to run). Starting and stopping hold
the local stack's lock (kinase_cli/local/lock.py), so two of them never interleave.
"""

from __future__ import annotations

from infra.naming import DEFAULT_ENV
from kinase_cli.aws.target import LOCAL_ACCOUNT, LOCAL_REGION, Target
from kinase_cli.local import lock, stack
from kinase_cli.runners import cdk
from kinase_cli.ui import console
from kinase_cli.ui.text import join
from kinase_cli.workflows import deploy


def start(port: int, kvs_port: int, redeploy: bool = True) -> dict:
    """Start what is not running, bootstrap cdk, redeploy what was lost; returns what was done.

    The report: endpoints, `started` (servers started now), `already_running`, `redeployed` and
    `not_redeployed` (environments).
    """
    with lock.exclusive(lock.STACK, "the local stack"):
        return _start(port, kvs_port, redeploy)


def stop() -> dict:
    """`kinase local down`: the local fleets' workers first (they release their leases while the stack still
    answers), then the servers; the deployments are forgotten. The report: `stopped`, `environments_lost`."""
    from kinase_cli.workflows.fleet import stop_every_local_fleet

    with lock.exclusive(lock.STACK, "the local stack"):
        stopped = stop_every_local_fleet() + stack.stop()
        return {"stopped": stopped, "environments_lost": stack.forget_deployments()}


def _start(port: int, kvs_port: int, redeploy: bool) -> dict:
    had_state = stack.load() is not None
    state, started = stack.ensure(port, kvs_port)
    report = {
        "aws_endpoint": state["aws_endpoint"],
        "kinesis_video_endpoint": state["kinesis_video_endpoint"],
        "started": started,
        "already_running": not started and bool(state.get("bootstrapped")),
        "redeployed": [],
        "not_redeployed": [],
    }
    if report["already_running"]:
        console.info(f"the local stack is already running: {state['aws_endpoint']} (Kinesis Video {state['kinesis_video_endpoint']})")
        return report
    if started:
        names = {"moto": f"moto on {state['aws_endpoint']}", "kvs": f"the Kinesis Video endpoint on {state['kinesis_video_endpoint']}"}
        console.step(f"{'restarted' if had_state and len(started) < 2 else 'started'} {' and '.join(names[s] for s in started)}")
    if not state.get("bootstrapped"):
        console.step("bootstrapping cdk into the local stack")
        target = Target(local=True)
        with deploy.Progress("cdk bootstrap", cdk.log_file(target, "bootstrap")) as on_line:
            cdk.bootstrap(target, LOCAL_ACCOUNT, LOCAL_REGION, on_line=on_line)
        state["bootstrapped"] = True
        stack.save(state)
    lost = stack.deployed_envs() if started else []
    if lost and redeploy:
        console.step(f"the local servers came back empty: redeploying {', '.join(lost)} (skip with --no-redeploy)")
        for env in lost:
            deploy.deploy_stacks(Target(local=True, env=env))
            report["redeployed"].append(env)
    elif lost:
        report["not_redeployed"] = lost
        hints = "; ".join(f"kinase deploy --local{'' if env == DEFAULT_ENV else f' --env {env}'}" for env in lost)
        message = f"the local servers came back empty: {', '.join(lost)} no longer deployed (run: {hints})"
        console.err.print(join(("warning:", "yellow"), " ", message), highlight=False, soft_wrap=True)
    console.info(f"local stack up: AWS {state['aws_endpoint']}, Kinesis Video {state['kinesis_video_endpoint']}")
    return report
