"""The fleet on the local stack: `kinase stream create/rm`, `kinase fleet up/scale/status/down --local`
(worker processes holding one DynamoDB lease per stream), and the AWS path against moto's ECS.

The environment is the test's own (`--env fleete2e`, deployed once for the module, with the GPU
workers of `deploy --gpu`, so the fleet has its Fargate and its GPU service), so its streams,
lease table and results queue hold nothing from other tests. Leases last 6 s (KINASE_LEASE_DURATION)
so an expiry takes seconds; every wait is on a condition with a generous deadline, never a sleep
that a loaded machine could outrun.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from kinase_cli.workflows.samples import shapes_video
from support.cli import assert_one_line_error, kinase
from support.json_contract import envelope
from support.ops import aws_env, local
from support.poll import until
from support.worker_stack import SHAPES_ONNX, frame_ids

pytestmark = pytest.mark.e2e

ENV = "fleete2e"
LOCAL = ("--local", "--env", ENV)
FRAMES, FPS, GOP = 30, 15, 15
WORKER_SETTINGS = (
    "-e",
    "KINASE_LEASE_DURATION=6",
    "-e",
    "KINASE_IMGSZ=320",
    "-e",
    "KINASE_START=EARLIEST",
    "-e",
    "KINASE_METRICS_INTERVAL=60",
)


def run_json(*args: str, command: str, timeout: float = 300) -> dict:
    proc = kinase(*args, "--json", timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return envelope(proc.stdout, command)


def status() -> dict:
    return run_json("fleet", "status", *LOCAL, command="fleet status")


def wait_for(condition, what: str, timeout: float = 180.0):
    """`fleet status` once `condition(status)` holds; the last status on failure."""
    last: list[dict] = []

    def met() -> dict | None:
        last[:] = [status()]
        return last[0] if condition(last[0]) else None

    return until(met, lambda: f"{what}; fleet status {json.dumps(last)[:3000]}", timeout=timeout, every=1.0)


def owners(state: dict) -> dict[str, str | None]:
    return {s["name"]: s["owner"] for s in state["streams"]}


@pytest.fixture(scope="module")
def fleet_env(local_stack):
    proc = kinase("deploy", *LOCAL, "--gpu", timeout=900)  # with the GPU workers: the fleet has two services
    assert proc.returncode == 0, proc.stderr[-3000:]
    for variant in ("cpu", "gpu"):  # the local stack's push: workers and fleets (Fargate and GPU) run the source tree
        kinase("push-image", *LOCAL, "--source-tree", "--variant", variant, check=True)
    outputs = json.loads(kinase("outputs", *LOCAL, "--json", check=True).stdout)["data"]
    yield outputs
    kinase("fleet", "down", *LOCAL, timeout=180)


@pytest.fixture
def fleet_down(fleet_env):
    """A test that starts workers leaves none running, whatever happens in it."""
    yield
    kinase("fleet", "down", *LOCAL, timeout=180)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    video = tmp_path_factory.mktemp("fleet") / "clip.mp4"
    shapes_video(video, frames=FRAMES, fps=FPS, size=(320, 240), gop=GOP, seed=41)
    return video


def log_lines(worker: dict) -> str:
    return Path(worker["log"]).read_text(errors="replace")


def test_six_streams_three_workers_each_stream_once_failover_and_runtime_streams(fleet_env, fleet_down, media, clip):
    queue = fleet_env["ResultsQueueUrl"]
    stack_stream = fleet_env["StreamName"]
    created = [run_json("stream", "create", f"cam{i}", *LOCAL, command="stream create")["name"] for i in range(5)]
    assert created == [f"kinase-{ENV}-cam{i}" for i in range(5)]
    streams = sorted([stack_stream, *created])

    up = run_json("fleet", "up", "--workers", "3", "--model", str(SHAPES_ONNX), *WORKER_SETTINGS, *LOCAL, command="fleet up")
    workers = {w["worker_id"]: w for w in up["workers"]}
    assert len(workers) == 3 and all(w["pid"] for w in workers.values())

    # 1. every stream held by exactly one worker, two each (`fleet up` leased the stack's own stream too)
    def balanced(state):
        held = {w["worker_id"]: w["streams"] for w in state["workers"]}
        return sorted(owners(state)) == streams and None not in owners(state).values() and sorted(map(len, held.values())) == [2, 2, 2]

    state = wait_for(balanced, "six streams balanced two per worker")
    assert {w["worker_id"] for w in state["workers"]} == set(workers)
    assert {w["pid"] for w in state["workers"]} == {w["pid"] for w in workers.values()}
    held_by = owners(state)

    # 2. every frame put into every stream delivered exactly once
    for stream in streams:
        media.put(stream, clip)
    messages = media.messages(queue, expect=FRAMES * len(streams), wait=300)
    ids = frame_ids(messages)
    assert len(ids) == len(set(ids)) == FRAMES * len(streams), Counter(ids).most_common(3)
    assert Counter(m["stream_name"] for m in messages) == {s: FRAMES for s in streams}
    wait_for(lambda st: all(s["checkpoint_fragment"] for s in st["streams"]), "a checkpoint in every lease")

    # 3. scale 3 -> 2: `fleet scale` SIGTERMs a worker (as ECS stops a task), which releases its leases after its
    # flush and checkpoint; the others take them as free leases
    scaled = run_json("fleet", "scale", "2", *LOCAL, command="fleet scale")
    (stopped,) = scaled["stopped"]
    assert not stopped["killed"] and len(scaled["workers"]) == 2
    leaving = stopped["worker_id"]
    left_streams = sorted(s for s, o in held_by.items() if o == leaving)
    state = wait_for(lambda st: all(owners(st)[s] not in (None, leaving) for s in left_streams), "released streams taken")
    log = log_lines(workers[leaving])
    assert all(f"released {s}" in log for s in left_streams), log[-3000:]
    takers = [workers[owners(state)[s]] for s in left_streams]
    for stream, taker in zip(left_streams, takers):
        took = [line for line in log_lines(taker).splitlines() if f"took {stream}" in line]
        assert took and "expired" not in took[-1], took
    for stream in left_streams:
        media.put(stream, clip)
    again = media.messages(queue, expect=FRAMES * len(left_streams), wait=300)
    assert len(again) == FRAMES * len(left_streams) and not set(frame_ids(again)) & set(ids), "nothing re-done after a release"

    # 4. SIGKILL (2 -> 1): no release; another worker takes the streams once it has seen their counters stand still
    state = status()
    killed = next(w["worker_id"] for w in state["workers"] if w["worker_id"] != leaving and w["streams"])
    killed_streams = sorted(s for s, o in owners(state).items() if o == killed)
    os.kill(workers[killed]["pid"], signal.SIGKILL)
    for stream in killed_streams:  # media persisted while nobody reads it
        media.put(stream, clip)
    state = wait_for(lambda st: all(owners(st)[s] not in (None, killed, leaving) for s in killed_streams), "expired leases taken over")
    survivor = workers[owners(state)[killed_streams[0]]]
    assert f"took {killed_streams[0]} (expired, from {killed})" in log_lines(survivor)
    after_kill = media.messages(queue, expect=FRAMES * len(killed_streams), wait=300)
    kill_ids = frame_ids(after_kill)
    assert Counter(m["stream_name"] for m in after_kill if m["frame_id"] not in ids) == {s: FRAMES for s in killed_streams}, (
        "every persisted frame delivered after the takeover"
    )
    redone = Counter(m["stream_name"] for m in after_kill if m["frame_id"] in set(ids))
    assert all(n <= GOP for n in redone.values()), f"at most one fragment re-done per stream: {redone}"
    assert len(kill_ids) - len(set(kill_ids)) <= GOP * len(killed_streams)

    # 5. a stream created at runtime is picked up; a stream removed is released by its worker
    new = run_json("stream", "create", "late", *LOCAL, command="stream create")["name"]
    state = wait_for(lambda st: owners(st).get(new) == survivor["worker_id"], "the new stream leased")
    media.put(new, clip)
    late = frame_ids(media.messages(queue, expect=FRAMES, wait=300))
    assert len(late) == FRAMES
    gone = created[0]
    holder = owners(state)[gone]
    removed = run_json("stream", "rm", gone, "--yes", *LOCAL, command="stream rm")
    assert removed["deleted"] and removed["lease_deleted"]
    assert gone not in owners(status())

    def stopped_reading(_state):  # its renewal failed, or its pipeline found the stream gone first
        log = log_lines(workers[holder])
        return f"lease on {gone} deleted: the stream was removed" in log or f"stream {gone} no longer exists" in log

    wait_for(stopped_reading, "the worker that read the removed stream stops reading it")
    listed = run_json("stream", "ls", *LOCAL, command="stream ls")["streams"]
    assert gone not in {s["name"] for s in listed} and all(s["owner"] == survivor["worker_id"] for s in listed)

    # 6. scale 1 -> 2: the new worker asks for its share and gets it handed over (flush, checkpoint, release, take);
    # video put while the leases change hands and after is delivered exactly once
    seen = set(ids) | set(frame_ids(again)) | set(kill_ids) | set(late)
    scaled = run_json("fleet", "scale", "2", *LOCAL, command="fleet scale")
    assert len(scaled["workers"]) == 2 and not scaled["stopped"]
    newcomer = next(w for w in scaled["workers"] if w["worker_id"] != survivor["worker_id"])
    current = sorted(owners(status()))
    for stream in current:
        media.put(stream, clip)
    state = wait_for(lambda st: sorted(len(w["streams"]) for w in st["workers"] if w.get("pid")) == [3, 3], "six streams rebalanced 3 + 3")
    handed = sorted(s for s, o in owners(state).items() if o == newcomer["worker_id"])
    for stream in handed:  # the new owner goes on from the checkpoint the old one left
        media.put(stream, clip)
    expected = {s: FRAMES * (2 if s in handed else 1) for s in current}
    across = media.messages(queue, expect=sum(expected.values()), wait=300)
    across_ids = frame_ids(across)
    assert len(across_ids) == len(set(across_ids)) == sum(expected.values()), Counter(across_ids).most_common(3)
    assert Counter(m["stream_name"] for m in across) == expected
    assert not set(across_ids) & seen, "nothing re-done across the hand-over"
    for stream in handed:
        took = [line for line in log_lines(newcomer).splitlines() if f"took {stream}" in line]
        assert took and "expired" not in took[-1], took

    # 7. `kinase status` shows the fleet: its workers, the streams each holds, the leases
    overview = run_json("status", *LOCAL, command="status")["fleet"]
    assert {w["worker_id"]: sorted(w["streams"]) for w in overview["workers"]} == {
        w["worker_id"]: sorted(w["streams"]) for w in state["workers"]
    }
    assert overview["leased_streams"] == len(current) and overview["scaling"] is None
    shown = kinase("status", *LOCAL, check=True).stdout
    assert f"2 worker(s), {len(current)} of {len(current)} stream(s) leased" in shown, shown
    assert all(str(w["pid"]) in shown for w in scaled["workers"]), shown

    # 8. down: every worker stops
    down = run_json("fleet", "down", *LOCAL, command="fleet down")
    assert down["stopped"] and not any(s["killed"] for s in down["stopped"])
    state = status()
    assert state["workers"] == [] and all(s["owner"] is None for s in state["streams"])


def test_stream_rm_asks_and_refuses_without_a_terminal(fleet_env):
    run_json("stream", "create", "kept", *LOCAL, command="stream create")
    proc = kinase("stream", "rm", "kept", *LOCAL, input="")
    assert proc.returncode != 0 and "not confirmed" in proc.stderr
    names = {s["name"] for s in run_json("stream", "ls", *LOCAL, command="stream ls")["streams"]}
    assert f"kinase-{ENV}-kept" in names
    assert run_json("stream", "rm", "kept", "--yes", *LOCAL, command="stream rm")["deleted"]


def test_adopted_stream_is_tagged_leased_and_kept_on_rm(fleet_env, media):
    """Tags through TagStream / ListTagsForStream, which the local endpoint serves as the Kinesis Video API
    reference describes them (API_TagStream, API_ListTagsForStream: a map of key to value per stream)."""
    media.kvs.create_stream(StreamName="lobby-camera-07", DataRetentionInHours=1)
    adopted = run_json("stream", "adopt", "lobby-camera-07", *LOCAL, command="stream adopt")
    assert adopted["adopted"] is True
    arn = media.kvs.describe_stream(StreamName="lobby-camera-07")["StreamInfo"]["StreamARN"]
    assert media.kvs.list_tags_for_stream(StreamARN=arn)["Tags"] == {"kinase:env": ENV}
    listed = {s["name"]: s for s in run_json("stream", "ls", *LOCAL, command="stream ls")["streams"]}
    assert listed["lobby-camera-07"]["adopted"] is True
    removed = run_json("stream", "rm", "lobby-camera-07", "--yes", *LOCAL, command="stream rm")
    assert (removed["deleted"], removed["lease_deleted"]) == (False, True)
    assert media.kvs.describe_stream(StreamName="lobby-camera-07")["StreamInfo"]["Status"] == "ACTIVE"


def test_fleet_on_aws_drives_the_ecs_service_and_its_autoscaling(fleet_env, media):
    """The AWS path (no --local flag on the fleet commands' target): moto's ECS and Application Auto Scaling."""
    env = aws_env()

    def aws_json(*args, command):
        proc = kinase(*args, "--env", ENV, "--json", env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return envelope(proc.stdout, command)

    up = aws_json("fleet", "up", "--workers", "2", "--max-streams-per-worker", "3", command="fleet up")
    assert up["local"] is False and up["desired_count"] == 2
    ecs = media.client("ecs")
    service = ecs.describe_services(cluster=fleet_env["ClusterName"], services=[fleet_env["FleetServiceName"]])["services"][0]
    assert service["desiredCount"] == 2
    definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    (container,) = definition["containerDefinitions"]
    assert {"name": "KINASE_MAX_STREAMS", "value": "3"} in container["environment"]
    state = aws_json("fleet", "status", command="fleet status")
    assert state["scaling"]["desired_count"] == 2 and (state["scaling"]["min"], state["scaling"]["max"]) == (2, 10)
    assert aws_json("fleet", "scale", "4", command="fleet scale")["desired_count"] == 4
    assert aws_json("fleet", "status", command="fleet status")["scaling"]["min"] == 4
    overview = aws_json("status", command="status")["fleet"]["scaling"]  # `kinase status` shows the scaling limits too
    assert (overview["service"], overview["desired_count"], overview["min"], overview["max"]) == (fleet_env["FleetServiceName"], 4, 4, 10)
    assert aws_json("fleet", "down", command="fleet down")["desired_count"] == 0
    scaling = aws_json("fleet", "status", command="fleet status")["scaling"]
    assert (scaling["desired_count"], scaling["min"], scaling["max"]) == (0, 0, 0)


def test_fleet_up_gpu_moves_the_fleet_to_the_gpu_service_and_back(fleet_env):
    """`fleet up --gpu` starts the GPU service and gives the Fargate one no room (both track the same metric);
    `scale` follows the fleet that is up; `fleet up` without --gpu moves it back; `down` stops both."""
    from infra import naming

    env = aws_env()

    def aws_json(*args, command):
        proc = kinase(*args, "--env", ENV, "--json", env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return envelope(proc.stdout, command)

    def service(name: str) -> tuple[int, int | None, int | None]:
        (described,) = ecs.describe_services(cluster=cluster, services=[name])["services"]
        found = scaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=[f"service/{cluster}/{name}"])["ScalableTargets"]
        return described["desiredCount"], found[0]["MinCapacity"], found[0]["MaxCapacity"]

    ecs, scaling = local().client("ecs"), local().client("application-autoscaling")
    cluster, cpu, gpu = fleet_env["ClusterName"], fleet_env["FleetServiceName"], fleet_env["GpuFleetServiceName"]
    assert service(gpu) == (0, 0, 0)  # deployed with no room to scale
    too_many = kinase("fleet", "up", "--gpu", "--workers", str(naming.GPU_MAX_WORKERS + 1), "--env", ENV, env=env)
    assert_one_line_error(too_many, f"at most {naming.GPU_MAX_WORKERS} workers")
    try:
        aws_json("fleet", "up", "--workers", "1", command="fleet up")
        up = aws_json("fleet", "up", "--gpu", "--workers", "2", "--max-streams-per-worker", "3", command="fleet up")
        assert (up["gpu"], up["service"], up["desired_count"]) == (True, gpu, 2)
        assert service(gpu) == (2, 2, naming.GPU_MAX_WORKERS) and service(cpu) == (0, 0, 0)
        definition = ecs.describe_task_definition(taskDefinition=up["task_definition"])["taskDefinition"]
        assert definition["family"] == naming.gpu_fleet_family(ENV)
        (container,) = definition["containerDefinitions"]
        settings = {e["name"]: e["value"] for e in container["environment"]}
        assert (settings["KINASE_MAX_STREAMS"], settings["KINASE_DEVICE"]) == ("3", "cuda")
        state = aws_json("fleet", "status", command="fleet status")["scaling"]
        assert (state["gpu"], state["service"], state["desired_count"]) == (True, gpu, 2)
        scaled = aws_json("fleet", "scale", "1", command="fleet scale")
        assert (scaled["gpu"], scaled["service"]) == (True, gpu) and service(gpu)[:2] == (1, 1)
        assert_one_line_error(
            kinase("fleet", "scale", str(naming.GPU_MAX_WORKERS + 1), "--env", ENV, env=env), "the fleet runs on the GPU workers"
        )
        back = aws_json("fleet", "up", "--workers", "2", command="fleet up")
        assert (back["gpu"], back["service"]) == (False, cpu)
        assert service(gpu) == (0, 0, 0) and service(cpu) == (2, 2, 10)
    finally:
        down = aws_json("fleet", "down", command="fleet down")
    assert sorted(down["services"]) == sorted([cpu, gpu])
    assert service(gpu) == (0, 0, 0) and service(cpu) == (0, 0, 0)


def cuda_here() -> bool:
    """Whether this machine has CUDA (for ONNX Runtime or torch); torch is imported only when asked, not at collection."""
    from worker.detector.ort import cuda_available

    if cuda_available():
        return True
    import torch

    return torch.cuda.is_available()


def test_fleet_up_gpu_locally_gives_the_workers_cuda(fleet_env, fleet_down):
    if cuda_here():
        pytest.skip("this machine has CUDA: the local workers would run on it instead of refusing")
    up = run_json("fleet", "up", "--gpu", "--model", str(SHAPES_ONNX), *WORKER_SETTINGS, *LOCAL, command="fleet up")
    (worker,) = up["workers"]
    assert up["gpu"] is True
    until(lambda: "error: KINASE_BACKEND=cuda but" in log_lines(worker), "the worker's CUDA refusal", timeout=120, every=0.5)
    assert "error: KINASE_BACKEND=cuda but this onnxruntime has no CUDA provider" in log_lines(worker)


def test_fleet_up_gpu_needs_gpu_workers(deployed_stack):
    assert_one_line_error(kinase("fleet", "up", "--gpu", env=aws_env()), "this environment has no GPU workers")


def test_run_task_refuses_a_fleet_stream_and_several_tasks_on_one_stream(fleet_env, fleet_down):
    stack_stream = fleet_env["StreamName"]
    proc = kinase("run-task", "--env", ENV, "--stream", stack_stream, "--count", "2", env=aws_env())
    assert_one_line_error(proc, f"--count 2 would read stream {stack_stream} 2 times", "kinase fleet up")
    # the AWS-path test may have registered a fleet revision with KINASE_MAX_STREAMS=3: one worker must hold all
    up = ("fleet", "up", "--workers", "1", "--max-streams-per-worker", "8", "--model", str(SHAPES_ONNX), *WORKER_SETTINGS, *LOCAL)
    run_json(*up, command="fleet up")
    try:
        state = wait_for(lambda st: owners(st).get(stack_stream), "the stack's stream leased")
        proc = kinase("run-task", *LOCAL, "--stream", stack_stream, "--model", str(SHAPES_ONNX))
        assert_one_line_error(proc, f"stream {stack_stream} is read by fleet worker {owners(state)[stack_stream]}", "kinase fleet status")
    finally:
        run_json("fleet", "down", *LOCAL, command="fleet down")
    freed = kinase("run-task", "--env", ENV, "--stream", stack_stream, "--json", env=aws_env())
    assert "is read by fleet worker" not in freed.stderr, "after `fleet down` the stream is free for a one-off task"
