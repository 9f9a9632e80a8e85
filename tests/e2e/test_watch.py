"""`kinase watch` against the local stack, plus the pieces it is made of."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter

import pytest
from rich.console import Console

from kinase_cli.ui.errors import KinaseError
from kinase_cli.watch import view
from kinase_cli.watch.messages import Filter, accept
from kinase_cli.watch.receiving import Budget, Receiver
from kinase_cli.watch.saver import destination
from kinase_cli.watch.session import Options, Resources, Session
from kinase_cli.watch.stats import Stats, percentile
from support.cli import ROOT, kinase, one_error_line
from support.messages import frame
from support.terminal import terminal
from worker import contract


def watch(stack, *args, timeout=120):
    return kinase("watch", "--local", *args, timeout=timeout)


def summary_frames(stderr: str) -> int:
    return int(re.search(r"watch ended \(.*?\): (\d+) frames", stderr).group(1))


# --- end to end: the real command on the local stack -------------------------------------------


@pytest.mark.e2e
def test_json_lines_match_the_messages_one_to_one_and_count_ends_cleanly(fresh):
    sent = [frame(fresh.bucket, i, ["person"] * (i % 3) + ["car"]) for i in range(23)]
    fresh.send([contract.dumps(m) for m in sent])

    proc = watch(fresh, "--json", "--count", "23")

    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(got, key=lambda m: m["frame_index"]) == sent
    assert "watch ended (--count 23 reached): 23 frames" in proc.stderr
    assert "car×23" in proc.stderr and "person×22" in proc.stderr
    assert fresh.depth(fresh.queue) == (0, 0)


@pytest.mark.e2e
def test_idle_timeout_ends_with_a_summary_and_plain_lines_when_not_a_terminal(fresh):
    fresh.send([contract.dumps(frame(fresh.bucket, i, ["dog", "dog"])) for i in range(4)])

    proc = watch(fresh, "--idle-timeout", "2")

    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 and all("cam-1" in line and "dog×2" in line for line in lines)
    assert "watch ended (idle for 2s): 4 frames" in proc.stderr
    assert "classes: dog×8" in proc.stderr
    assert fresh.depth(fresh.queue) == (0, 0)


@pytest.mark.e2e
def test_count_counts_only_shown_frames_and_filters_consume_the_rest(fresh):
    bodies = [frame(fresh.bucket, i, ["person"], conf=0.9) for i in range(3)]
    bodies += [frame(fresh.bucket, 10 + i, ["car"], conf=0.9) for i in range(3)]
    bodies += [frame(fresh.bucket, 20, ["person"], conf=0.3), frame(fresh.bucket, 21, ["person"], stream="other")]
    fresh.send([contract.dumps(m) for m in bodies])

    proc = watch(fresh, "--json", "--class", "person", "--min-conf", "0.5", "--stream", "cam-1", "--idle-timeout", "2")

    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(line)["frame_index"] for line in proc.stdout.splitlines()) == [0, 1, 2]
    assert "filtered out: 5" in proc.stderr
    assert fresh.depth(fresh.queue) == (0, 0)


@pytest.mark.e2e
def test_peek_shows_every_message_once_and_leaves_them_all_on_the_queue(fresh):
    sent = [frame(fresh.bucket, i, ["cat"]) for i in range(12)]
    fresh.send([contract.dumps(m) for m in sent])

    proc = watch(fresh, "--peek", "--json", "--idle-timeout", "2")

    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sorted(got, key=lambda m: m["frame_index"]) == sent
    assert fresh.depth(fresh.queue) == (12, 0)
    again = watch(fresh, "--json", "--count", "12")
    assert len(again.stdout.splitlines()) == 12
    assert fresh.depth(fresh.queue) == (0, 0)


@pytest.mark.e2e
def test_bad_messages_are_counted_shown_and_left_on_the_queue(fresh):
    good = [frame(fresh.bucket, i, ["person"]) for i in range(4)]
    broken = frame(fresh.bucket, 99, ["person"])
    del broken["latency_ms"]
    bad = [
        "{'bucket': 'python repr'}",
        json.dumps({**frame(fresh.bucket, 98, []), "schema": "kinase.frame/99"}),
        contract.dumps({**frame(fresh.bucket, 97, ["person"]), "bucket": "someone-elses-bucket"}),
        json.dumps(broken),
    ]
    fresh.send([contract.dumps(m) for m in good] + bad)

    proc = watch(fresh, "--json", "--idle-timeout", "3")

    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(line)["frame_index"] for line in proc.stdout.splitlines()) == [0, 1, 2, 3]
    assert "invalid: 4" in proc.stderr
    for reason in ("not JSON", "wrong schema 'kinase.frame/99'", "foreign bucket: 'someone-elses-bucket'", "latency_ms"):
        assert reason in proc.stderr
    visible, in_flight = fresh.depth(fresh.queue)
    assert visible + in_flight == 4


@pytest.mark.e2e
def test_save_writes_frames_inside_dir_whatever_the_key_says(fresh, tmp_path):
    s3 = fresh.client("s3")
    keys = [
        "frames/cam-1/street/00000001.jpg",
        "../../escaped.jpg",
        "/etc/absolute.jpg",
        "frames/../../../../up.jpg",
        "frames/cam-1/..\\..\\win.jpg",
    ]
    messages = []
    for i, key in enumerate(keys):
        s3.put_object(Bucket=fresh.bucket, Key=key, Body=f"jpeg {i}".encode())
        messages.append({**frame(fresh.bucket, i, ["person"]), "key": key})
    fresh.send([contract.dumps(m) for m in messages])
    target = tmp_path / "inside" / "saved"

    proc = watch(fresh, "--json", "--count", str(len(keys)), "--save", str(target))

    assert proc.returncode == 0, proc.stderr
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert len(written) == len(keys)
    assert all(p.resolve().is_relative_to(target.resolve()) for p in written)
    assert sorted(p.read_bytes() for p in written) == sorted(f"jpeg {i}".encode() for i in range(len(keys)))
    assert "saved: 5, save errors: 0" in proc.stderr
    assert fresh.depth(fresh.queue) == (0, 0)


@pytest.mark.e2e
def test_save_skips_frames_the_worker_did_not_upload(fresh, tmp_path):
    """A worker with KINASE_UPLOAD other than `all` sends `key` null for frames it kept out of S3:
    they are shown and acknowledged, and nothing is fetched for them."""
    uploaded = frame(fresh.bucket, 0, ["person"])
    fresh.client("s3").put_object(Bucket=fresh.bucket, Key=uploaded["key"], Body=b"jpeg 0")
    messages = [uploaded, {**frame(fresh.bucket, 1, ["person"]), "key": None}, {**frame(fresh.bucket, 2, []), "key": None}]
    fresh.send([contract.dumps(m) for m in messages])
    out = tmp_path / "out"

    proc = watch(fresh, "--json", "--count", "3", "--save", str(out))

    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(line)["frame_index"] for line in proc.stdout.splitlines()) == [0, 1, 2]
    assert [p.read_bytes() for p in out.rglob("*") if p.is_file()] == [b"jpeg 0"]
    assert "saved: 1, save errors: 0" in proc.stderr
    assert fresh.depth(fresh.queue) == (0, 0)


@pytest.mark.e2e
def test_a_frame_whose_object_is_missing_is_shown_once_reported_once_and_creates_no_folder(fresh, tmp_path):
    fresh.send([contract.dumps(frame(fresh.bucket, 1, ["person"]))])  # no such object in the bucket
    out = tmp_path / "out"

    proc = watch(fresh, "--json", "--idle-timeout", "3", "--save", str(out))

    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["frame_index"] for line in proc.stdout.splitlines()] == [1]
    assert proc.stderr.count("frame shown but not saved: frames/cam-1/street.mp4/00000001.jpg") == 1
    assert "saved: 0, save errors: 1" in proc.stderr
    assert list(out.iterdir()) == []
    assert fresh.depth(fresh.queue) == (0, 0) and fresh.depth(fresh.dlq) == (0, 0)


@pytest.mark.e2e
def test_a_local_disk_error_is_reported_once_per_frame_and_never_sends_a_valid_frame_to_the_dlq(fresh, tmp_path):
    """The stream's folder is a file, so every write fails for root too (permission bits would not)."""
    s3 = fresh.client("s3")
    messages = [frame(fresh.bucket, i, ["person"]) for i in range(3)]
    for m in messages:
        s3.put_object(Bucket=fresh.bucket, Key=m["key"], Body=b"\xff\xd8 jpeg")
    fresh.send([contract.dumps(m) for m in messages])
    out = tmp_path / "out"
    out.mkdir()
    (out / "cam-1").write_text("a file where the stream folder would go")

    proc = watch(fresh, "--idle-timeout", "3", "--save", str(out))

    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 3
    for m in messages:
        assert proc.stderr.count(f"frame shown but not saved: {m['key']}") == 1
    assert "watch ended (idle for 3s): 3 frames" in proc.stderr and "saved: 0, save errors: 3" in proc.stderr
    assert fresh.depth(fresh.queue) == (0, 0) and fresh.depth(fresh.dlq) == (0, 0)


@pytest.mark.e2e
@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_save_into_a_folder_that_cannot_be_written_fails_before_receiving(fresh, tmp_path, where):
    """Tests run as root, for whom permission bits do not stop a write: a path under a file, or in /proc, fails for anyone."""
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "frames" if where == "under-a-file" else "/proc/kinase-frames"
    fresh.send([contract.dumps(frame(fresh.bucket, 1, ["person"]))])

    proc = watch(fresh, "--idle-timeout", "2", "--save", str(target))

    assert f"error: cannot save frames into {target}" in one_error_line(proc)
    assert proc.stdout == ""
    assert sum(fresh.depth(fresh.queue)) == 1


@pytest.mark.e2e
def test_live_table_in_a_real_terminal_shows_updates_and_ends_on_ctrl_c(fresh, tmp_path):
    with terminal(f"kinase-watch-{tmp_path.name}", "watch", "--local", size=(160, 40), env={"COLUMNS": "160", "LINES": "40"}) as term:
        first = term.wait_for(r"frames\s+0\b")
        assert "detections" in first and "latency" in first
        fresh.send([contract.dumps(frame(fresh.bucket, i, ["person", "person", "car"])) for i in range(3)])
        shown = term.wait_for(r"frames\s+3\b")
        assert "person×6 car×3" in shown
        assert len(re.findall(r"cam-1 .* person×2 car×1", shown)) == 3
        fresh.send([contract.dumps(frame(fresh.bucket, 3, ["bus"]))])
        updated = term.wait_for(r"frames\s+4\b")
        assert "bus×1" in updated
        term.keys("C-c")
        ended = term.wait_for(r"exit=\d+")
        assert "watch ended (interrupted): 4 frames" in ended and "exit=0" in ended


# --- in process: the table as rendered, the receiver's retries ----------------------------------


@pytest.mark.e2e
def test_table_renders_the_frames_and_correct_counts(fresh):
    sent = [frame(fresh.bucket, i, ["person"] * 3 + ["car"] * (i % 2)) for i in range(6)]
    fresh.send([contract.dumps(m) for m in sent])
    fresh.send(["not json at all"])
    recording = Console(record=True, force_terminal=True, width=160, height=40)
    resources = Resources(fresh.client("sqs"), fresh.client("s3"), fresh.queue, fresh.dlq, fresh.bucket)

    session = Session(resources, Options(count=6), recording, Console(stderr=True))
    summary, reason = session.run()

    assert reason == "--count 6 reached"
    assert summary["frames"] == 6 and summary["classes"] == {"person": 18, "car": 3}
    final = Console(record=True, width=160, height=40)
    final.print(view.live(session.stats, "results"))
    text = final.export_text()
    assert re.search(r"frames\s+6\b", text)
    assert "person×18 car×3" in text
    assert len(re.findall(r"cam-1 .* person×3 car×1 .* 0\.80 .* 250 ms", text)) == 3
    assert len(re.findall(r"cam-1 .* person×3 +│", text)) == 3
    assert "person×18 car×3" in recording.export_text()


@pytest.mark.e2e
def test_a_crash_while_handling_leaves_every_unhandled_message_on_the_queue(fresh):
    """Whatever breaks mid-batch (here the per-frame callback), no message that was not fully handled is deleted."""
    fresh.send([contract.dumps(frame(fresh.bucket, i, ["person"])) for i in range(10)])
    shown = []

    def on_frame(message: dict) -> None:
        if len(shown) == 3:
            raise RuntimeError("boom")
        shown.append(message["frame_index"])

    resources = Resources(fresh.client("sqs"), fresh.client("s3"), fresh.queue, fresh.dlq, fresh.bucket)
    session = Session(
        resources, Options(json=True, on_frame=on_frame, receivers=1), Console(file=open(os.devnull, "w")), Console(stderr=True)
    )
    with pytest.raises(RuntimeError, match="boom"):
        session.run()

    assert len(shown) == 3
    for _ in range(100):  # handed back at once (visibility 0); a receive still open may hold some a moment
        visible, in_flight = fresh.depth(fresh.queue)
        if in_flight == 0:
            break
        time.sleep(0.2)
    assert session.acker.deleted == 3
    assert visible + in_flight == 7


@pytest.mark.e2e
@pytest.mark.slow
def test_frames_from_the_real_worker_render_with_correct_counts_and_save(fresh, tmp_path):
    from kinase_cli.aws.target import Target
    from kinase_cli.workflows.samples import shapes_video
    from support.worker_stack import SHAPES_ONNX, run_worker

    video = tmp_path / "shapes.mp4"
    shapes_video(video, frames=12, fps=10, size=(320, 240), seed=3)
    env = {
        **Target(local=True).child_env(),
        "KINASE_SOURCE": str(video),
        "KINASE_BUCKET": fresh.bucket,
        "KINASE_QUEUE_URL": fresh.queue,
        "KINASE_MODEL": str(SHAPES_ONNX),
        "KINASE_IMGSZ": "320",
    }
    worker = run_worker(env)
    assert worker.returncode == 0, worker.stderr

    peeked = watch(fresh, "--peek", "--json", "--idle-timeout", "2")
    messages = [json.loads(line) for line in peeked.stdout.splitlines()]
    assert len(messages) == 12 and "invalid: 0" in peeked.stderr
    expected = Counter(d["class"] for m in messages for d in m["summary"])
    assert expected, "the shapes model should find shapes"

    recording = Console(record=True, force_terminal=True, width=160, height=40)
    resources = Resources(fresh.client("sqs"), fresh.client("s3"), fresh.queue, fresh.dlq, fresh.bucket)
    session = Session(resources, Options(count=12, save=tmp_path / "saved"), recording, Console(stderr=True))
    summary, _ = session.run()

    assert summary["frames"] == 12 and summary["classes"] == dict(sorted(expected.items()))
    final = Console(record=True, width=160, height=40)
    final.print(view.live(session.stats, "results"))
    text = final.export_text()
    assert re.search(r"frames\s+12\b", text)
    assert view.format_detections(expected) in text
    saved = sorted((tmp_path / "saved").rglob("*.jpg"))
    assert len(saved) == 12 and all(p.read_bytes()[:2] == b"\xff\xd8" for p in saved)
    assert fresh.depth(fresh.queue) == (0, 0)


class FlakySQS:
    """An SQS client whose connection drops twice before answering."""

    def __init__(self):
        self.calls = 0

    def receive_message(self, **params):
        from botocore.exceptions import EndpointConnectionError

        self.calls += 1
        if self.calls <= 2:
            raise EndpointConnectionError(endpoint_url="http://localhost:1")
        return {"Messages": [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}", "Attributes": {}}]}


def test_a_lost_connection_is_retried_not_fatal():
    import queue
    import threading

    out, stop, statuses = queue.Queue(), threading.Event(), []
    sqs = FlakySQS()
    receiver = Receiver(0, sqs, "q", out, Budget(1), stop, threading.Event(), 1, None, statuses.append)
    receiver.start()
    batch = out.get(timeout=30)
    stop.set()
    receiver.join(5)

    assert [m.message_id for m in batch] == ["m1"]
    assert receiver.error is None and sqs.calls == 3
    assert statuses[-1] == "reconnected" and statuses[0].startswith("reconnecting")


class ScriptedSQS:
    """Answers receives with the batch sizes given, then nothing; records deletes and visibility changes."""

    def __init__(self, sizes: list[int]):
        self.sizes = list(sizes)
        self.calls: list[tuple[str, int]] = []

    def receive_message(self, **params):
        n = min(params["MaxNumberOfMessages"], self.sizes.pop(0)) if self.sizes else 0
        return {"Messages": [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": "{}"} for i in range(n)]}

    def delete_message_batch(self, QueueUrl, Entries):
        self.calls.append(("delete", len(Entries)))
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def change_message_visibility_batch(self, QueueUrl, Entries):
        self.calls.append(("visibility", len(Entries)))
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def test_more_receivers_join_only_while_batches_come_back_full():
    import queue
    import threading

    deep, stop, states = threading.Event(), threading.Event(), []

    class Recording(queue.Queue):
        def put(self, item, *args, **kwargs):
            states.append((len(item), deep.is_set()))
            if len(states) == 3:
                stop.set()

    receiver = Receiver(0, ScriptedSQS([10, 3, 10]), "q", Recording(), Budget(None), stop, deep, 1, None, lambda s: None)
    receiver.run()
    assert states == [(10, True), (3, False), (10, True)]


def test_acks_go_out_in_batches_of_ten():
    from kinase_cli.watch.receiving import Acker

    sqs = ScriptedSQS([])
    acker = Acker(sqs, "q", lambda text: None)
    acker.start()
    for i in range(25):
        acker.delete(f"r{i}")
    for i in range(3):
        acker.set_visibility(f"v{i}", 0)
    acker.close()
    assert sorted(n for kind, n in sqs.calls if kind == "delete") == [5, 10, 10]
    assert [n for kind, n in sqs.calls if kind == "visibility"] == [3]
    assert acker.deleted == 25


class DeniedSQS:
    def receive_message(self, **params):
        from botocore.exceptions import ClientError

        raise ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": 403}}, "ReceiveMessage"
        )


def test_an_error_the_operator_must_fix_stops_the_receiver():
    import queue
    import threading

    stop = threading.Event()
    receiver = Receiver(0, DeniedSQS(), "q", queue.Queue(), Budget(None), stop, threading.Event(), 1, None, lambda s: None)
    receiver.run()
    assert stop.is_set() and type(receiver.error).__name__ == "ClientError"


# --- pure pieces -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["../../x", "/etc/passwd", "frames/../../../x.jpg", "..", "a/../../b", "..\\..\\x", ""])
def test_saved_file_names_stay_inside_the_directory(tmp_path, key):
    root = tmp_path / "dir"
    path = destination(root, key)
    assert path.resolve().is_relative_to(root.resolve()) and path.resolve() != root.resolve()


def test_a_symlink_inside_the_directory_cannot_lead_a_save_outside(tmp_path):
    root = tmp_path / "dir"
    root.mkdir()
    (root / "cam").symlink_to(tmp_path)
    with pytest.raises(KinaseError, match="outside"):
        destination(root, "frames/cam/x.jpg")


def test_accept_refuses_foreign_buckets_and_bad_times():
    message = frame("bucket-1", 1, ["person"])
    assert accept(contract.dumps(message), "bucket-1") == message
    with pytest.raises(contract.ContractError, match="foreign bucket: 'bucket-1'"):
        accept(contract.dumps(message), "bucket-2")
    with pytest.raises(contract.ContractError, match="frame_time"):
        accept(json.dumps({**message, "frame_time": "yesterday"}), "bucket-1")


def test_filters_keep_matching_detections_and_drop_frames_without_any():
    message = frame("bucket-1", 1, ["person", "car"], conf=0.7)
    assert Filter().detections(message) == message["summary"]
    assert [d["class"] for d in Filter(classes=frozenset({"car"})).detections(message)] == ["car"]
    assert Filter(classes=frozenset({"bus"})).detections(message) is None
    assert Filter(min_conf=0.9).detections(message) is None
    assert Filter(stream="other").detections(message) is None
    assert Filter(stream="cam-1").detections({**message, "summary": []}) == []


def test_stats_percentiles_and_invalid_messages_counted_once():
    assert percentile([], 50) is None
    assert percentile([float(v) for v in range(1, 101)], 50) == 50.0
    assert percentile([float(v) for v in range(1, 101)], 95) == 95.0
    stats = Stats()
    assert stats.bad("id-1", "not JSON: x") is not None
    assert stats.bad("id-1", "not JSON: x") is None
    stats.bad("id-2", "wrong schema 'x', expected 'y'")
    assert stats.invalid == 2 and dict(stats.invalid_reasons) == {"not JSON": 1, "wrong schema": 1}


def test_help_has_examples():
    proc = subprocess.run([sys.executable, "-m", "kinase_cli", "watch", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0 and "kinase watch --json" in proc.stdout and "--idle-timeout" in proc.stdout
