"""Events from a running worker (issue 24): the generated events video through a file source, with the rules in force
in the bucket and the events published to an SNS topic fanned out to a queue, counted exactly against its ground truth."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from infra.stacks.dashboard import EVENT_METRICS
from kinase_cli.workflows.event_samples import RULES, events_video
from support.emf import declared, documents, values
from support.events_topic import counted, events_topic, received
from support.poll import until
from support.worker_stack import Background, run_worker, summary
from worker import rules

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return events_video(tmp_path_factory.mktemp("events") / "events.mp4", seed=0)


def test_file_source_events_match_the_ground_truth_exactly(media, video):
    target = media.fresh()
    topic, events_queue = events_topic(media, target.stream)
    assert rules.publish(media.s3, target.bucket, RULES, applied_at="2026-12-07T00:00:00Z") == 1

    run = run_worker(media.worker_env(target, str(video.path), events_topic_arn=topic, metrics_interval=1))

    assert run.returncode == 0, run.stderr
    assert "rules version 1 in force" in run.stderr
    found = received(media, events_queue)
    assert {e["type"] for e in found.values()} <= {"line_crossed", "zone_entered", "zone_left", "dwell"}
    assert counted(found) == {
        "lines": {"door": {d: dict(sorted(c.items())) for d, c in video.counts["lines"]["door"].items()}},
        "zones": video.counts["zones"],
    }
    # each event's snapshot is its frame's annotated JPEG, in the bucket; each has a track id of a confirmed track
    keys = set(media.keys(target.bucket, "frames/"))
    assert all(e["snapshot_key"] in keys and isinstance(e["track_id"], int) for e in found.values())
    # the frames carry the running counts: the last frame's are the video's line totals and an empty zone
    messages = media.messages(target.queue_url, expect=len(video.frames))
    last = max(messages, key=lambda m: m["source"]["frame_number"])
    assert last["counts"]["lines"]["door"] == {d: c for d, c in video.counts["lines"]["door"].items()}
    assert sum(last["counts"]["zones"]["bay"]["occupancy"].values()) == 0
    assert any("track_id" in d for m in messages for d in m["summary"])
    totals = summary(run.stderr)
    assert totals["read"] == totals["delivered"] == len(video.frames)
    # the metric lines (EMF, a line a second) carry the events as the dashboard draws them, adding up to the truth
    docs = documents(run.stdout)
    assert set(declared(docs, EVENT_METRICS)) == set(EVENT_METRICS)
    per_type: Counter = Counter()
    for (_stream, type_), n in values(docs, "Events", "Type"):
        per_type[type_] += n
    assert per_type == Counter(e["type"] for e in video.events)
    crossings: Counter = Counter()
    for (_stream, line, direction), n in values(docs, "LineCrossings", "Line", "Direction"):
        crossings[line, direction] += n
    assert crossings == {("door", d): sum(c.values()) for d, c in video.counts["lines"]["door"].items()}
    occupancy = [n for (_stream, zone), n in values(docs, "ZoneOccupancy", "Zone") if zone == "bay"]
    assert max(occupancy) >= 1 and occupancy[-1] == 0


def test_kvs_events_exact_through_a_sigkill_and_a_restart(media, video):
    """Through Kinesis Video (stream put + worker), with the worker killed (SIGKILL) mid-video and started again: the
    restart resumes the tracker and the counts from the checkpoint, so no count is lost, none doubled, and the events
    of the frames done again carry the same ids (no event twice under two ids)."""
    target = media.fresh(with_stream=True)
    topic, events_queue = events_topic(media, target.stream)
    rules.publish(media.s3, target.bucket, RULES, applied_at="2026-12-07T00:00:00Z")
    fragments = media.put(target.stream, video.path).acks.persisted
    env = media.worker_env(target, f"kvs://{target.stream}", start="EARLIEST", idle_exit=5, events_topic_arn=topic)

    first = Background(env)
    until(
        lambda: (media.checkpoint(target) or {}).get("fragment_number") in fragments[len(fragments) // 3 :],
        "a third of the video checkpointed",
    )
    first.kill()
    assert first.proc.returncode == -9
    run = run_worker(env)

    assert run.returncode == 0, run.stderr
    assert "resuming" in run.stderr
    found = received(media, events_queue)
    assert counted(found) == {
        "lines": {"door": {d: dict(sorted(c.items())) for d, c in video.counts["lines"]["door"].items()}},
        "zones": video.counts["zones"],
    }, run.stderr[-5000:]
    assert len({(e["type"], e["rule"], e["track_id"], e["frame_id"]) for e in found.values()}) == len(found)


def test_rules_applied_while_the_worker_runs_are_picked_up_without_a_restart(media):
    """Rules applied after the start reach the running worker within its poll (KINASE_RULES_POLL), which logs the
    version; a stored version that is not valid is refused there and the rules in force stay."""
    target = media.fresh(with_stream=True)
    worker = Background(media.worker_env(target, f"kvs://{target.stream}", rules_poll=0.5))
    try:
        worker.wait_for(lambda line: "no rules applied" in line)
        rules.publish(media.s3, target.bucket, RULES, applied_at="2026-12-07T00:00:00Z")
        worker.wait_for(lambda line: "rules version 1 in force" in line)
        broken = {"version": 2, "applied_at": "2026-12-07T00:01:00Z", "rules": {"schema": "kinase.rules/1", "streams": []}}
        media.s3.put_object(Bucket=target.bucket, Key=rules.CURRENT_KEY, Body=json.dumps(broken).encode())
        worker.wait_for(lambda line: "the stored rules are not valid; keeping version 1" in line)
        worker.terminate()
        code, _out, err = worker.finish(timeout=120)
    finally:
        worker.kill()
    assert code == 0, err
    assert "rules version 2" not in err
