"""`kinase run-task` / `stop-task`: RunTask on the local stack's moto ECS, and the real worker with --local.

The Fargate path is run as on AWS (no --local) with AWS_ENDPOINT_URL pointing at the local stack's
moto server (see ops_support.aws_env); what moto recorded is read back with DescribeTasks. moto
walks a task RUNNING -> ... -> STOPPED one step per DescribeTasks and always reports exit code 0,
so a non-zero container exit code is checked on DescribeTasks answers shaped like AWS's, and end to
end through the local worker, whose exit code is real.
"""

from __future__ import annotations

import json

import pytest

from kinase_cli.workflows.tasks import exit_code, task_summary
from support.cli import ROOT, kinase, one_error_line
from support.ops import aws_env, drain, local, newest_task_definition, put_image, remove_images

pytestmark = pytest.mark.e2e

FAST_POLL = {"KINASE_POLL_SECONDS": "0.1"}
SHAPES_MODEL = ROOT / "models" / "shapes-yolo11n.onnx"


@pytest.fixture
def image(deployed_stack):
    """The image the newest task-definition revision names is in the repository."""
    definition = newest_task_definition(deployed_stack)
    ref = next(c["image"] for c in definition["containerDefinitions"] if c["name"] == deployed_stack["ContainerName"])
    if "@" not in ref:
        put_image(deployed_stack, ref.rsplit(":", 1)[1], "run-task")
    return definition


def fargate(*args: str):
    return kinase("run-task", *args, env={**aws_env(), **FAST_POLL})


def test_run_task_carries_cluster_task_definition_network_and_overrides(deployed_stack, image):
    proc = fargate(
        "--stream",
        deployed_stack["StreamName"],
        "--model",
        "yolo11s.onnx",
        "--imgsz",
        "320",
        "--conf",
        "0.5",
        "--every",
        "2",
        "--fps",
        "4",
        "--count",
        "1",
        "--cpu",
        "2048",
        "--memory",
        "4096",
        "-e",
        "KINASE_CLASSES=circle,square",
        "-e",
        "KINASE_START=EARLIEST",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["data"]
    assert len(data["tasks"]) == 1  # one task per stream (several: `kinase fleet`, tests/e2e/test_fleet.py)
    assert data["cost_per_task_hour"]["estimate"] is True
    assert data["cost_per_task_hour"]["usd_per_hour"] == pytest.approx(2 * 0.04048 + 4 * 0.004445)

    ecs, ec2 = local().client("ecs"), local().client("ec2")
    tasks = ecs.describe_tasks(cluster=deployed_stack["ClusterName"], tasks=[t["task_arn"] for t in data["tasks"]])["tasks"]
    assert len(tasks) == 1
    for task in tasks:
        assert task["clusterArn"].endswith(f"/{deployed_stack['ClusterName']}")
        assert task["taskDefinitionArn"] == image["taskDefinitionArn"]
        assert task["launchType"] == "FARGATE"
        assert task["startedBy"] == "kinase"
        overrides = task["overrides"]
        assert (overrides["cpu"], overrides["memory"]) == ("2048", "4096")
        container = overrides["containerOverrides"][0]
        assert container["name"] == deployed_stack["ContainerName"]
        assert {e["name"]: e["value"] for e in container["environment"]} == {
            "KINASE_SOURCE": f"kvs://{deployed_stack['StreamName']}",
            "KINASE_STREAM_NAME": deployed_stack["StreamName"],
            "KINASE_MODEL": "yolo11s.onnx",
            "KINASE_IMGSZ": "320",
            "KINASE_CONF": "0.5",
            "KINASE_EVERY": "2",
            "KINASE_FPS": "4.0",
            "KINASE_CLASSES": "circle,square",
            "KINASE_START": "EARLIEST",
        }
        eni = {d["name"]: d["value"] for d in task["attachments"][0]["details"]}
        assert eni["subnetId"] in deployed_stack["SubnetIds"].split(",")
        interface = ec2.describe_network_interfaces(NetworkInterfaceIds=[eni["networkInterfaceId"]])["NetworkInterfaces"][0]
        assert [g["GroupId"] for g in interface["Groups"]] == [deployed_stack["SecurityGroupId"]]


def test_run_task_starts_the_image_push_image_pinned(deployed_stack, image, tmp_path):
    """push-image's pinned revision is what run-task starts (the fake docker reports the digest put into ECR)."""
    import os

    from support.ops import fake_docker

    digest = put_image(deployed_stack, "pinned", "pinned-for-run-task")
    fake_docker(tmp_path / "bin")
    env = {
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_DOCKER_LOG": str(tmp_path / "calls"),
        "FAKE_DOCKER_DIGEST": digest,
    }
    kinase("push-image", "--local", "--no-build", "--tag", "pinned", env=env, check=True)
    proc = fargate("--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["data"]
    assert data["image"] == f"{deployed_stack['RepositoryUri']}@{digest}"
    task = local().client("ecs").describe_tasks(cluster=deployed_stack["ClusterName"], tasks=[data["tasks"][0]["task_arn"]])["tasks"][0]
    assert task["taskDefinitionArn"] == data["task_definition_arn"] == newest_task_definition(deployed_stack)["taskDefinitionArn"]
    assert task["containers"][0]["image"] == f"{deployed_stack['RepositoryUri']}@{digest}"


def test_wait_follows_the_task_to_stopped_and_returns_its_exit_code(deployed_stack, image):
    proc = fargate("--wait")
    assert proc.returncode == 0, proc.stderr
    assert "STOPPED" in proc.stderr and "exit code 0" in proc.stderr
    task_id = proc.stdout.split("\n")[1].strip()
    task = local().client("ecs").describe_tasks(cluster=deployed_stack["ClusterName"], tasks=[task_id])["tasks"][0]
    assert task["lastStatus"] == "STOPPED"


def test_follow_prints_the_task_log_stream(deployed_stack, image):
    """moto runs no container, so nothing writes the log; events put in the task's stream while it
    runs stand for the awslogs driver (stream prefix/container/task id, as the task definition says)."""
    import threading
    import time

    logs = local().client("logs")
    group = deployed_stack["LogGroupName"]
    seen = []

    def awslogs_driver():
        ecs = local().client("ecs")
        while not seen:
            arns = ecs.list_tasks(cluster=deployed_stack["ClusterName"])["taskArns"]
            fresh = [a for a in arns if a.rsplit("/", 1)[-1] not in known]
            if fresh:
                stream = f"worker/{deployed_stack['ContainerName']}/{fresh[0].rsplit('/', 1)[-1]}"
                logs.create_log_stream(logGroupName=group, logStreamName=stream)
                logs.put_log_events(
                    logGroupName=group,
                    logStreamName=stream,
                    logEvents=[{"timestamp": int(time.time() * 1000), "message": "worker says hello"}],
                )
                seen.append(stream)
            time.sleep(0.05)

    known = {a.rsplit("/", 1)[-1] for a in local().client("ecs").list_tasks(cluster=deployed_stack["ClusterName"])["taskArns"]}
    driver = threading.Thread(target=awslogs_driver, daemon=True)
    driver.start()
    proc = kinase("run-task", "--follow", env={**aws_env(), "KINASE_POLL_SECONDS": "2"})
    seen.append("done")
    assert proc.returncode == 0, proc.stderr
    assert "worker says hello" in proc.stdout


def test_exit_code_is_the_worker_containers():
    stopped = {
        "taskArn": "arn:aws:ecs:eu-west-1:1:task/c/aaa",
        "lastStatus": "STOPPED",
        "stopCode": "EssentialContainerExited",
        "containers": [{"name": "worker", "exitCode": 3}],
    }
    never_ran = {
        "taskArn": "arn:aws:ecs:eu-west-1:1:task/c/bbb",
        "lastStatus": "STOPPED",
        "stopCode": "TaskFailedToStart",
        "stoppedReason": "CannotPullContainerError: pull image manifest has been retried 5 time(s)",
        "containers": [{"name": "worker"}],
    }
    ok = {"taskArn": "arn:aws:ecs:eu-west-1:1:task/c/ccc", "lastStatus": "STOPPED", "containers": [{"name": "worker", "exitCode": 0}]}
    assert exit_code([stopped], "worker") == 3
    assert exit_code([ok, stopped], "worker") == 3
    assert exit_code([never_ran], "worker") == 1
    assert exit_code([ok], "worker") == 0
    assert task_summary(never_ran, "worker")["stopped_reason"].startswith("CannotPullContainerError")


def test_stop_task_by_id_and_all(deployed_stack, image):
    source = f"s3://{deployed_stack['FramesBucketName']}/inputs/clip.mp4"  # a source the task role may read
    run = fargate("--source", source, "--count", "2", "--json")
    assert run.returncode == 0, run.stderr
    started = json.loads(run.stdout)["data"]["tasks"]
    one = started[0]["task_id"]
    proc = kinase("stop-task", one, env=aws_env())
    assert proc.returncode == 0, proc.stderr
    assert f"stopping {one}" in proc.stdout
    ecs = local().client("ecs")
    task = ecs.describe_tasks(cluster=deployed_stack["ClusterName"], tasks=[one])["tasks"][0]
    assert task["lastStatus"] == "STOPPED" and task["stoppedReason"] == "stopped by kinase stop-task"

    proc = kinase("stop-task", "--all", "-y", env=aws_env())
    assert proc.returncode == 0, proc.stderr
    other = ecs.describe_tasks(cluster=deployed_stack["ClusterName"], tasks=[started[1]["task_id"]])["tasks"][0]
    assert other["stoppedReason"] == "stopped by kinase stop-task"


def test_no_image_pushed_yet(deployed_stack, image):
    ecr = local().client("ecr")
    repo = deployed_stack["RepositoryName"]
    saved = ecr.batch_get_image(repositoryName=repo, imageIds=ecr.list_images(repositoryName=repo)["imageIds"])["images"]
    remove_images(deployed_stack)
    try:
        line = one_error_line(fargate())
        assert f"no worker image has been pushed to {repo} yet" in line and "kinase push-image" in line
    finally:
        for image in saved:
            if image["imageId"].get("imageTag"):
                ecr.put_image(repositoryName=repo, imageManifest=image["imageManifest"], imageTag=image["imageId"]["imageTag"])


def test_an_image_missing_from_the_repository(deployed_stack, image):
    """Someone registered a revision pinned to a digest that is not (or no longer) in the repository."""
    ecs = local().client("ecs")
    missing = "sha256:" + "e" * 64
    containers = [{**c, "image": f"{deployed_stack['RepositoryUri']}@{missing}"} for c in image["containerDefinitions"]]
    keys = ("family", "networkMode", "requiresCompatibilities", "cpu", "memory", "taskRoleArn", "executionRoleArn")
    ecs.register_task_definition(containerDefinitions=containers, **{k: image[k] for k in keys})
    try:
        line = one_error_line(fargate())
        assert f"the task definition's image {missing} is not in {deployed_stack['RepositoryName']}" in line
    finally:
        ecs.register_task_definition(containerDefinitions=image["containerDefinitions"], **{k: image[k] for k in keys})


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--stream", "no-such-stream"], "stream no-such-stream does not exist"),
        (["--stream", "a", "--source", "b.mp4"], "--stream and --source are exclusive"),
        (["-e", "NOEQUALS"], "--env-var 'NOEQUALS' is not KEY=VALUE"),
        (["--cpu", "256", "--memory", "4096"], "memory 4096 MiB is not valid with cpu 256"),
        (["--cpu", "300"], "cpu 300 is not a Fargate size"),
        (["--env", "nosuch"], "stack kinase-nosuch-storage is not deployed"),
        (["--source", "s3://not-allowed-videos/clip.mp4"], "the worker may not read s3://not-allowed-videos"),
    ],
)
def test_bad_input_is_one_line(deployed_stack, image, args, expected):
    assert expected in one_error_line(fargate(*args))


def test_local_runs_the_real_worker_and_its_messages_reach_the_queue(deployed_stack, tmp_path):
    from kinase_cli.workflows.samples import shapes_video
    from worker import contract

    if not SHAPES_MODEL.exists():
        pytest.fail(f"{SHAPES_MODEL} is missing: the worker's test model has not been committed")
    video = tmp_path / "shapes.mp4"
    truth = shapes_video(video, frames=12, fps=6, size=(320, 240), seed=5)
    queue = deployed_stack["ResultsQueueUrl"]
    drain(queue)
    proc = kinase("run-task", "--local", "--source", str(video), "--model", str(SHAPES_MODEL), "--imgsz", "320", "--json", timeout=900)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["data"]
    task_id = data["tasks"][0]["task_id"]
    assert data["tasks"][0]["exit_code"] == 0

    messages = [contract.parse(body) for body in drain(queue)]
    assert sorted(m["frame_index"] for m in messages) == list(range(len(truth)))
    assert {m["stream_name"] for m in messages} == {"shapes"}
    assert {m["bucket"] for m in messages} == {deployed_stack["FramesBucketName"]}
    (uri,) = {m["source"]["uri"] for m in messages}  # uploaded to inputs/ first, as on AWS, and read from there
    bucket = deployed_stack["FramesBucketName"]
    assert uri.startswith(f"s3://{bucket}/inputs/") and uri.endswith("-shapes.mp4")
    assert local().client("s3").get_object(Bucket=bucket, Key=uri[len(f"s3://{bucket}/") :])["Body"].read() == video.read_bytes()

    logs = kinase("logs", "--local", "--task", task_id, "--json")
    assert logs.returncode == 0, logs.stderr
    events = [json.loads(line) for line in logs.stdout.splitlines()]
    assert events and {e["task"] for e in events} == {task_id}


def test_local_worker_exit_code_passes_through(deployed_stack, tmp_path):
    missing = tmp_path / "missing.mp4"
    proc = kinase("run-task", "--local", "--source", str(missing), "--model", "yolo11n.yaml")
    assert proc.returncode == 2  # the worker's exit code for invalid settings
    assert "no such file" in proc.stderr  # the worker's lines are diagnostics: stderr
    assert "exited with code 2" in proc.stderr


def _run_task_mid_video(deployed_stack, tmp_path):
    """`kinase run-task --local` on a 600-frame video, in a session of its own, once the first result is on the
    queue (so the worker is mid-video); the process and the results queue."""
    import subprocess
    import time

    from kinase_cli.workflows.samples import shapes_video
    from support.cli import KINASE

    video = tmp_path / "long.mp4"
    shapes_video(video, frames=600, fps=30, size=(320, 240), seed=9)
    sqs = local().client("sqs")
    queue = deployed_stack["ResultsQueueUrl"]
    drain(queue)  # before the worker starts: draining while it sends would chase its messages
    proc = subprocess.Popen(
        [*KINASE, "run-task", "--local", "--source", str(video), "--model", str(SHAPES_MODEL), "--imgsz", "320"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a signal reaches kinase alone, or (killpg) kinase and the worker as a terminal's would
    )
    for line in proc.stderr:
        if "reading" in line:
            break
    while not int(
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    ):
        assert proc.poll() is None, "the worker ended before it was signalled"
        time.sleep(0.1)
    return proc, queue


def test_ctrl_c_stops_the_local_worker_gracefully(deployed_stack, tmp_path):
    """Ctrl-C goes to the terminal's whole process group: the worker flushes and exits 0, and kinase
    keeps showing its output until then and passes that exit code on. The interrupt comes once the
    first result is on the queue, so the worker is mid-video."""
    import os
    import signal

    proc, queue = _run_task_mid_video(deployed_stack, tmp_path)
    os.killpg(proc.pid, signal.SIGINT)
    rest, errors = proc.communicate(timeout=300)
    drain(queue)
    assert proc.returncode == 0, errors
    assert "SIGINT received" in errors
    assert "exited with code 0" in errors and "Traceback" not in errors


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_to_kinase_stop_the_local_worker_gracefully(deployed_stack, tmp_path, signame):
    """SIGTERM (a supervisor, `kill`) or SIGHUP (the terminal closed) sent to the `kinase run-task --local`
    process alone reaches the worker as ECS's SIGTERM: it flushes what it has inferred, exits 0, and kinase
    passes that exit code on. Every frame the worker reports delivered is on the queue."""
    import os
    import re
    import signal

    proc, queue = _run_task_mid_video(deployed_stack, tmp_path)
    os.kill(proc.pid, getattr(signal, signame))
    rest, errors = proc.communicate(timeout=300)
    assert proc.returncode == 0, errors
    assert "SIGTERM received" in errors  # the worker's own line: it was told to stop, not killed
    assert "exited with code 0" in errors and "Traceback" not in errors
    delivered = int(re.search(r"delivered (\d+)", errors.split("summary:")[-1]).group(1))
    assert 0 < delivered < 600
    assert len(drain(queue)) == delivered
