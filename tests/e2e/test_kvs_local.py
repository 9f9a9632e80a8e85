"""The local Kinesis Video endpoint, through boto3 and raw HTTP: control plane, auth, PutMedia, GetMedia."""

from __future__ import annotations

import datetime
import http.client
import io
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from kinase_cli.aws import kvs_put
from kinase_cli.local import kvs_media
from kinase_cli.local.kvs_store import ZERO_RETENTION_FRAGMENTS, Fragment, Store
from kinase_cli.ui.errors import KinaseError
from kinase_cli.workflows.samples import shapes_video
from support.kvs import READ_IDLE_SECONDS, decode, endpoint
from support.poll import until
from worker.sources import mkv

FPS, GOP, FRAMES = 10, 5, 30  # six fragments of half a second


@pytest.fixture(scope="module")
def live_stream(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("kvs") / "shapes.mp4"
    shapes_video(path, frames=FRAMES, fps=FPS, size=(96, 64), gop=GOP)
    chunks: list[bytes] = []
    kvs_put.remux(path, chunks.append)
    return b"".join(chunks)


def put(endpoint, stream: str, body: bytes, start: float | None = None):
    """PutMedia with the project's client; returns (acks, producer start timestamp)."""
    start = time.time() if start is None else start
    creds = endpoint.session().get_credentials().get_frozen_credentials()
    session = kvs_put.PutMediaSession(endpoint.url, stream, creds, "us-east-1", start)
    session.send(body)
    return session.finish(), start


def raw_put(endpoint, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
    parts = urlsplit(endpoint.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", "/putMedia", body=body, headers=headers)
    response = conn.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def with_timecodes(stream: bytes, timecodes: list[int]) -> bytes:
    """The same live stream with its clusters' timecodes replaced, in order."""
    out, clusters = b"", iter(timecodes)
    for el in mkv.iter_level1(io.BytesIO(stream)):
        out += mkv.with_cluster_timecode(el.body, next(clusters)) if el.id == mkv.CLUSTER else el.raw
    return out


# ------------------------------------------------------------------------------- control plane


def test_control_plane_as_boto3_sees_it(kvs_endpoint):
    kv = kvs_endpoint.control()
    arn = kv.create_stream(StreamName="cp-one", DataRetentionInHours=2, MediaType="video/h264")["StreamARN"]
    assert arn.startswith("arn:aws:kinesisvideo:us-east-1:") and "/cp-one/" in arn
    with pytest.raises(kv.exceptions.ResourceInUseException):
        kv.create_stream(StreamName="cp-one")
    info = kv.describe_stream(StreamName="cp-one")["StreamInfo"]
    assert (info["StreamARN"], info["Status"], info["DataRetentionInHours"], info["MediaType"]) == (arn, "ACTIVE", 2, "video/h264")
    assert kv.describe_stream(StreamARN=arn)["StreamInfo"]["StreamName"] == "cp-one"
    kv.create_stream(StreamName="cp-two")
    names = [
        s["StreamName"]
        for s in kv.list_streams(StreamNameCondition={"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": "cp-"})["StreamInfoList"]
    ]
    assert names == ["cp-one", "cp-two"]
    page = kv.list_streams(MaxResults=1, StreamNameCondition={"ComparisonOperator": "BEGINS_WITH", "ComparisonValue": "cp-"})
    assert len(page["StreamInfoList"]) == 1 and page["NextToken"]
    for api in ("PUT_MEDIA", "GET_MEDIA"):
        assert kv.get_data_endpoint(StreamName="cp-one", APIName=api)["DataEndpoint"] == kvs_endpoint.url
    kv.delete_stream(StreamARN=arn, CurrentVersion=info["Version"])
    with pytest.raises(kv.exceptions.ResourceNotFoundException) as err:
        kv.describe_stream(StreamName="cp-one")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(kv.exceptions.ResourceNotFoundException):
        kv.get_data_endpoint(StreamName="cp-one", APIName="PUT_MEDIA")


def test_requests_signed_with_the_wrong_secret_are_refused(kvs_endpoint):
    with pytest.raises(ClientError) as err:
        kvs_endpoint.control(secret="not-the-secret").list_streams()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_stale_signatures_are_refused(kvs_endpoint, monkeypatch):
    import botocore.auth

    an_hour_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: an_hour_ago.replace(tzinfo=None))
    with pytest.raises(ClientError) as err:
        kvs_endpoint.control().list_streams()
    assert err.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "expired" in err.value.response["Error"]["Message"]


def test_putmedia_without_a_valid_signature_is_refused(kvs_endpoint, live_stream):
    kvs_endpoint.create("auth-put")
    headers = {
        "x-amzn-stream-name": "auth-put",
        "x-amzn-fragment-timecode-type": "RELATIVE",
        "x-amzn-producer-start-timestamp": f"{time.time():.3f}",
    }
    status, got, body = raw_put(kvs_endpoint, headers, live_stream)
    assert status == 403
    assert got["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException")
    now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    forged = dict(
        headers,
        Authorization=f"AWS4-HMAC-SHA256 Credential=testing/{now[:8]}/us-east-1/kinesisvideo/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
        **{"X-Amz-Date": now},
    )
    status, got, _ = raw_put(kvs_endpoint, forged, live_stream)
    assert status == 403
    assert got["x-amzn-ErrorType"].startswith("InvalidSignatureException")
    assert kvs_endpoint.fragments("auth-put", StartSelectorType="EARLIEST") == []


# ------------------------------------------------------------------------------------ PutMedia


def test_putmedia_acknowledges_every_cluster(kvs_endpoint, live_stream):
    kvs_endpoint.create("acks")
    acks, _ = put(kvs_endpoint, "acks", live_stream)
    assert acks.events == {"BUFFERING": 6, "RECEIVED": 6, "PERSISTED": 6}
    assert acks.persisted == sorted(acks.persisted) and len(set(acks.persisted)) == 6
    assert all(n.isdigit() and len(n) == 47 for n in acks.persisted)


def test_ack_lines_are_the_service_json(kvs_endpoint, live_stream):
    """Through a plain HTTP client (Content-Length body): one JSON object per line, per event."""
    kvs_endpoint.create("raw-acks")
    headers = session_headers(kvs_endpoint, "raw-acks")
    status, _, body = raw_put(kvs_endpoint, headers, with_timecodes(live_stream, [5000, 5500, 6000, 6500, 7000, 7500]))
    assert status == 200
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [line["EventType"] for line in lines[:3]] == ["BUFFERING", "RECEIVED", "PERSISTED"]
    assert {tuple(sorted(line)) for line in lines} == {("EventType", "FragmentNumber", "FragmentTimecode")}
    assert [line["FragmentTimecode"] for line in lines if line["EventType"] == "PERSISTED"] == [5000, 5500, 6000, 6500, 7000, 7500]


def session_headers(endpoint, stream: str) -> dict:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    request = AWSRequest(
        method="POST",
        url=endpoint.url + "/putMedia",
        data=b"",
        headers={
            "x-amzn-stream-name": stream,
            "x-amzn-fragment-timecode-type": "RELATIVE",
            "x-amzn-producer-start-timestamp": f"{time.time():.3f}",
        },
    )
    SigV4Auth(endpoint.session().get_credentials(), "kinesisvideo", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_one_putmedia_may_carry_several_matroska_files(kvs_endpoint, live_stream):
    """A producer may start a new EBML header + Segment mid-session (new codec data); timecodes keep rising."""
    kvs_endpoint.create("two-files")
    acks, start = put(kvs_endpoint, "two-files", live_stream + with_timecodes(live_stream, [3000, 3500, 4000, 4500, 5000, 5500]))
    assert acks.count("PERSISTED") == 12
    frames = decode(kvs_endpoint.fragments("two-files", StartSelectorType="EARLIEST"))
    assert [when for when, _ in frames] == pytest.approx([start + i / FPS for i in range(2 * FRAMES)], abs=0.002)


def test_decreasing_timecodes_get_error_4004_and_the_client_says_so(kvs_endpoint, live_stream):
    kvs_endpoint.create("backwards")
    with pytest.raises(KinaseError) as err:
        put(kvs_endpoint, "backwards", with_timecodes(live_stream, [0, 500, 1000, 400, 1500, 2000]))
    assert "4004" in err.value.message and "FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS" in err.value.message
    assert "timecode 400" in err.value.message
    assert len(kvs_endpoint.fragments("backwards", StartSelectorType="EARLIEST")) == 3


def test_invalid_matroska_gets_error_4006(kvs_endpoint):
    kvs_endpoint.create("garbage")
    with pytest.raises(KinaseError) as err:
        put(kvs_endpoint, "garbage", b"this is not matroska at all" * 10)
    assert "4006" in err.value.message and "INVALID_MKV_DATA" in err.value.message


def test_one_putmedia_connection_per_stream(kvs_endpoint, live_stream):
    """API_dataplane_PutMedia: "If you attempt more than one concurrent PutMedia connection, Kinesis Video Streams
    throttles the latest connection with a ConnectionLimitExceededException error"."""
    kvs_endpoint.create("one-producer")
    creds = kvs_endpoint.session().get_credentials().get_frozen_credentials()
    first = kvs_put.PutMediaSession(kvs_endpoint.url, "one-producer", creds, "us-east-1", time.time())
    first.send(live_stream)
    until(lambda: len(first.acks.persisted) == 6)
    second = kvs_put.PutMediaSession(kvs_endpoint.url, "one-producer", creds, "us-east-1", time.time())
    with pytest.raises(KinaseError) as err:
        second.send(live_stream)
        second.finish()
    assert err.value.message.startswith("ConnectionLimitExceededException in PutMedia")
    assert len(first.finish().persisted) == 6
    acks, _ = put(kvs_endpoint, "one-producer", live_stream)  # the first one has ended: a new one may start
    assert acks.count("PERSISTED") == 6


def test_more_than_five_fragments_a_second_are_throttled(kvs_endpoint, live_stream):
    """API_dataplane_PutMedia: "A client can send up to five fragments per second per stream"; a producer that
    pushes faster is throttled: its acknowledgements come no faster (awslabs/amazon-kinesis-video-streams-
    producer-sdk-cpp issue 82). Twelve fragments sent at once take at least 7/5 s to be persisted, none lost."""
    kvs_endpoint.create("too-fast")
    creds = kvs_endpoint.session().get_credentials().get_frozen_credentials()
    session = kvs_put.PutMediaSession(kvs_endpoint.url, "too-fast", creds, "us-east-1", time.time() - 60)
    sent = time.monotonic()
    session.send(live_stream + with_timecodes(live_stream, [3000, 3500, 4000, 4500, 5000, 5500]))
    until(lambda: len(session.acks.persisted) == 12)
    assert time.monotonic() - sent >= 7 / 5 * 0.95
    assert len(session.finish().persisted) == 12


def test_producer_timestamps_in_the_future_get_error_4007(kvs_endpoint, live_stream):
    """API_dataplane_PutMedia acknowledgement ErrorId 4007 INVALID_PRODUCER_TIMESTAMP: the service refuses
    fragments stamped ahead of its clock (a producer clock ten minutes fast)."""
    kvs_endpoint.create("fast-clock")
    with pytest.raises(KinaseError) as err:
        put(kvs_endpoint, "fast-clock", live_stream, start=time.time() + 600)
    assert "4007" in err.value.message and "INVALID_PRODUCER_TIMESTAMP" in err.value.message
    assert kvs_endpoint.fragments("fast-clock", StartSelectorType="EARLIEST") == []
    acks, _ = put(kvs_endpoint, "fast-clock", live_stream)  # the clock corrected: accepted again
    assert acks.count("PERSISTED") == 6


def test_a_session_past_the_maximum_connection_duration_gets_error_4003(tmp_path, live_stream):
    """API_dataplane_PutMedia acknowledgement ErrorId 4003 MAX_CONNECTION_DURATION_REACHED (duration shortened
    to 5 s by the endpoint's --put-max-seconds setting): what was sent before it is kept."""
    with endpoint(tmp_path / "kvs", "--put-max-seconds", "5") as kvs:
        kvs.create("long-session")
        creds = kvs.session().get_credentials().get_frozen_credentials()
        opened = time.monotonic()
        session = kvs_put.PutMediaSession(kvs.url, "long-session", creds, "us-east-1", time.time() - 60)
        session.send(live_stream)
        until(lambda: len(session.acks.persisted) == 6)
        time.sleep(max(0.0, opened + 5.5 - time.monotonic()))
        with pytest.raises(KinaseError) as err:
            session.send(with_timecodes(live_stream, [3000, 3500, 4000, 4500, 5000, 5500]))
            session.finish()
        assert "4003" in err.value.message and "MAX_CONNECTION_DURATION_REACHED" in err.value.message
        assert len(kvs.fragments("long-session", StartSelectorType="EARLIEST")) == 6


def test_putmedia_to_an_unknown_stream_is_resource_not_found(kvs_endpoint, live_stream):
    with pytest.raises(KinaseError) as err:
        put(kvs_endpoint, "no-such-stream", live_stream)
    assert err.value.message.startswith("ResourceNotFoundException in PutMedia")


# ------------------------------------------------------------------------------------ GetMedia


@pytest.fixture(scope="module")
def stored(kvs_endpoint, live_stream):
    """A stream holding two PutMedia sessions of the sample: twelve fragments."""
    kvs_endpoint.create("getmedia")
    first, start1 = put(kvs_endpoint, "getmedia", live_stream, start=1_700_000_000.0)
    second, start2 = put(kvs_endpoint, "getmedia", live_stream, start=1_700_000_010.0)
    return {"numbers": first.persisted + second.persisted, "starts": (start1, start2)}


def test_earliest_returns_everything_with_the_kinesis_tags(kvs_endpoint, stored, live_stream):
    fragments = kvs_endpoint.fragments("getmedia", StartSelectorType="EARLIEST")
    assert [f.fragment_number for f in fragments] == stored["numbers"]
    assert [f.continuation_token for f in fragments] == stored["numbers"]
    expected = [1_700_000_000.0 + i * 0.5 for i in range(6)] + [1_700_000_010.0 + i * 0.5 for i in range(6)]
    assert [f.producer_timestamp for f in fragments] == pytest.approx(expected)
    assert [f.cluster_timecode for f in fragments] == [round(t * 1000) for t in expected]  # absolute, as the service
    assert all(f.millis_behind_now >= 0 for f in fragments)
    servers = [f.server_timestamp for f in fragments]
    assert servers == sorted(servers)
    frames = decode(fragments)
    assert len(frames) == 2 * FRAMES
    assert [when for when, _ in frames] == pytest.approx(
        [t + i / FPS for t in (1_700_000_000.0, 1_700_000_010.0) for i in range(FRAMES)], abs=0.002
    )


def test_fragment_number_starts_with_the_chunk_after_that_fragment(kvs_endpoint, stored):
    """API_dataplane_StartSelector: "FRAGMENT_NUMBER - Start with the chunk after a specific fragment"."""
    numbers = stored["numbers"]
    fragments = kvs_endpoint.fragments("getmedia", StartSelectorType="FRAGMENT_NUMBER", AfterFragmentNumber=numbers[4])
    assert [f.fragment_number for f in fragments] == numbers[5:]


def test_continuation_token_resumes_after_the_last_fragment_read(kvs_endpoint, stored):
    payload = kvs_endpoint.get_media("getmedia", StartSelectorType="EARLIEST")
    reader = mkv.iter_fragments(payload)
    read = [next(reader) for _ in range(5)]
    payload.close()
    resumed = kvs_endpoint.fragments("getmedia", StartSelectorType="CONTINUATION_TOKEN", ContinuationToken=read[-1].continuation_token)
    assert [f.fragment_number for f in read + resumed] == stored["numbers"]


def test_producer_and_server_timestamp_selectors(kvs_endpoint, stored):
    numbers = stored["numbers"]
    by_producer = kvs_endpoint.fragments("getmedia", StartSelectorType="PRODUCER_TIMESTAMP", StartTimestamp=1_700_000_010.7)
    assert [f.fragment_number for f in by_producer] == numbers[7:]  # the fragment holding 10.7 s starts at 10.5 s
    everything = kvs_endpoint.fragments("getmedia", StartSelectorType="EARLIEST")
    by_server = kvs_endpoint.fragments("getmedia", StartSelectorType="SERVER_TIMESTAMP", StartTimestamp=everything[0].server_timestamp - 60)
    assert [f.fragment_number for f in by_server] == numbers


def collect(payload) -> tuple[list[mkv.Fragment], threading.Thread]:
    """Read a GetMedia body on a thread; the list fills as fragments arrive."""
    got: list[mkv.Fragment] = []

    def read():
        try:
            got.extend(mkv.iter_fragments(payload))
        except Exception:  # the test shuts the connection down under the reader
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return got, reader


def shut(payload) -> None:
    """End a GetMedia connection from the client side, as a consumer that stops reading does."""
    payload._raw_stream.connection.sock.shutdown(socket.SHUT_RDWR)
    payload.close()


def test_idle_getmedia_holds_the_connection_open_and_sends_nothing(kvs_endpoint, live_stream):
    """boto3 issue 3532: on a stream with no new data, GetMedia blocks; the response never ends by itself.
    A consumer tells "idle" from "ended" only by the connection staying open."""
    kvs_endpoint.create("idle")
    before, _ = put(kvs_endpoint, "idle", live_stream)
    payload = kvs_endpoint.get_media("idle", StartSelectorType="NOW")
    got, reader = collect(payload)
    reader.join(2 * READ_IDLE_SECONDS)
    assert reader.is_alive() and got == []  # still open, nothing sent
    after, _ = put(kvs_endpoint, "idle", live_stream)
    until(lambda: len(got) == len(after.persisted))
    assert [f.fragment_number for f in got] == after.persisted
    assert not set(before.persisted) & {f.fragment_number for f in got}
    reader.join(2 * READ_IDLE_SECONDS)
    assert reader.is_alive()  # idle again, still open
    shut(payload)
    reader.join(10)


def test_getmedia_sessions_end_after_the_maximum_duration_at_a_fragment_boundary(tmp_path, live_stream):
    """The limits page: the service ends GetMedia sessions (about every 45 minutes; the stream token is renewed
    every 45 minutes), here after 1 s (--max-session-seconds). Each body ends cleanly after whole fragments; a
    GetMedia with the last continuation token goes on with the next fragment: nothing lost, nothing twice.
    PutMedia takes five fragments a second, so the six fragments put take over one session."""
    with endpoint(tmp_path / "kvs", "--max-session-seconds", "1") as kvs:
        kvs.create("sessions")
        selector = {"StartSelectorType": "EARLIEST"}
        putting = threading.Thread(target=lambda: acks.append(put(kvs, "sessions", live_stream)[0]), daemon=True)
        acks: list = []
        sessions: list[list[mkv.Fragment]] = []
        deadline = time.monotonic() + 120
        while sum(map(len, sessions)) < FRAMES // GOP and time.monotonic() < deadline:
            payload = kvs.get_media("sessions", read_timeout=30, **selector)
            if not sessions:
                putting.start()  # once the first GetMedia is open
            sessions.append(list(mkv.iter_fragments(payload)))  # ends by itself: no read timeout, no error
            if sessions[-1]:
                selector = {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": sessions[-1][-1].continuation_token}
        putting.join(60)
        got = [f.fragment_number for session in sessions for f in session]
        assert got == acks[0].persisted
        assert len([s for s in sessions if s]) >= 2
        assert "GetMedia session on sessions ended after 1s" in kvs.log.read_text()


def test_an_idle_getmedia_connection_behind_a_middlebox_is_reset(tmp_path, live_stream):
    """What a NAT gateway, load balancer or firewall that drops idle connections does to GetMedia on a silent stream
    (boto3 issue 3532: the service sends nothing): --idle-reset-seconds closes the connection with a TCP RST,
    which the consumer reads as "Connection reset by peer", not as a read timeout or a clean end."""
    import urllib3

    with endpoint(tmp_path / "kvs", "--idle-reset-seconds", "1") as kvs:
        kvs.create("middlebox")
        put(kvs, "middlebox", live_stream)
        payload = kvs.get_media("middlebox", read_timeout=30, StartSelectorType="NOW")
        with pytest.raises(urllib3.exceptions.ProtocolError) as err:
            list(mkv.iter_fragments(payload))
        assert "reset" in str(err.value).lower()
        assert "GetMedia connection of middlebox idle for 1s: reset" in kvs.log.read_text()


def test_getmedia_connections_per_stream_are_limited_to_three(kvs_endpoint, live_stream):
    """The limits page (Media API, GetMedia: 3 connections per stream): a fourth concurrent GetMedia gets
    ConnectionLimitExceededException; a connection the consumer closes frees its place."""
    kvs_endpoint.create("crowded")
    put(kvs_endpoint, "crowded", live_stream)
    open_ = [kvs_endpoint.get_media("crowded", StartSelectorType="NOW") for _ in range(3)]
    media = kvs_endpoint.media("crowded")
    with pytest.raises(media.exceptions.ConnectionLimitExceededException):
        media.get_media(StreamName="crowded", StartSelector={"StartSelectorType": "NOW"})
    kvs_endpoint.create("next-door")  # the limit is per stream
    other = kvs_endpoint.get_media("next-door", StartSelectorType="NOW")
    shut(open_.pop())

    def one_more():
        try:
            open_.append(kvs_endpoint.get_media("crowded", StartSelectorType="NOW"))
            return True
        except ClientError as exc:  # still counted as open, or more than 5 calls in the last second
            assert exc.response["Error"]["Code"] in ("ConnectionLimitExceededException", "ClientLimitExceededException")
            return False

    until(one_more)
    for payload in [*open_, other]:
        shut(payload)


def test_getmedia_calls_per_stream_are_limited_to_five_a_second(kvs_endpoint, live_stream):
    """API_dataplane_GetMedia: "A client can call GetMedia up to five times per second per stream"; beyond that,
    ClientLimitExceededException. Ten calls at once (each answered at once: a start the stream does not hold)."""
    kvs_endpoint.create("busy")
    put(kvs_endpoint, "busy", live_stream)
    media = kvs_endpoint.media("busy")
    selector = {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": "1"}
    codes: list[str] = []

    def call():
        try:
            media.get_media(StreamName="busy", StartSelector=selector)["Payload"].read()
            codes.append("ok")
        except ClientError as exc:
            codes.append(exc.response["Error"]["Code"])

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert set(codes) == {"ok", "ClientLimitExceededException"} and codes.count("ok") >= 5
    time.sleep(1.1)  # the window of the limit
    call()
    assert codes[-1] == "ok"


def test_a_start_the_stream_no_longer_holds_gets_error_tag_4000(kvs_endpoint, live_stream):
    """API_dataplane_GetMedia: the error tags AWS_KINESISVIDEO_ERROR_CODE / _ERROR_ID, 4000 "Requested fragment
    is not found": here a continuation token from a stream that was deleted and created again."""
    kv = kvs_endpoint.control()
    kvs_endpoint.create("reborn")
    old, _ = put(kvs_endpoint, "reborn", live_stream)
    kv.delete_stream(StreamARN=kv.describe_stream(StreamName="reborn")["StreamInfo"]["StreamARN"])
    kvs_endpoint.create("reborn")
    new, _ = put(kvs_endpoint, "reborn", live_stream)
    for selector in (
        {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": old.persisted[-1]},
        {"StartSelectorType": "FRAGMENT_NUMBER", "AfterFragmentNumber": old.persisted[2]},
    ):
        payload = kvs_endpoint.get_media("reborn", **selector)
        fragments = list(mkv.iter_fragments(payload))  # the response ends after the error
        assert len(fragments) == 1
        assert (fragments[0].error_id, fragments[0].error_code) == ("4000", "Requested fragment is not found")
        assert fragments[0].fragment_number is None
    resumed = kvs_endpoint.fragments("reborn", StartSelectorType="CONTINUATION_TOKEN", ContinuationToken=new.persisted[2])
    assert [f.fragment_number for f in resumed] == new.persisted[3:]


def test_a_continuation_token_older_than_the_retention_is_not_found():
    """API_dataplane_GetMedia error 4000 for a start point that the stream's retention has dropped."""
    store = Store()
    stream = store.create("short-memory", retention_hours=1)
    now = time.time()
    expired, kept = _fragment(store, now - 7200), _fragment(store, now - 60)
    store.append(stream, expired)
    store.append(stream, kept)
    with pytest.raises(kvs_media.FragmentNotFound):
        kvs_media._start(store, stream, {"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": expired.number})
    first, _ = kvs_media._start(store, stream, {"StartSelectorType": "EARLIEST"})
    assert [f.number for f in first] == [kept.number]


def test_getmedia_errors_as_boto3_sees_them(kvs_endpoint, stored):
    media = kvs_endpoint.media("getmedia")
    with pytest.raises(media.exceptions.ResourceNotFoundException):
        media.get_media(StreamName="no-such-stream", StartSelector={"StartSelectorType": "EARLIEST"})
    with pytest.raises(media.exceptions.InvalidArgumentException):
        media.get_media(StreamName="getmedia", StartSelector={"StartSelectorType": "CONTINUATION_TOKEN", "ContinuationToken": "nope"})


# ------------------------------------------------------------------------------------ retention


def _fragment(store: Store, server_timestamp: float) -> Fragment:
    return Fragment(store.next_fragment_number(), server_timestamp, server_timestamp, 500, b"", b"x" * 10)


def test_retention_drops_fragments_older_than_the_stream_keeps():
    store = Store()
    stream = store.create("kept-one-hour", retention_hours=1)
    now = time.time()
    for age in (7300, 3700, 100, 0):
        store.append(stream, _fragment(store, now - age))
    assert [round(now - f.server_timestamp) for f in store.fragments_after(stream, None)] == [100, 0]


def test_zero_retention_keeps_a_small_live_buffer():
    store = Store()
    stream = store.create("live-only", retention_hours=0)
    for _ in range(ZERO_RETENTION_FRAGMENTS + 25):
        store.append(stream, _fragment(store, time.time()))
    kept = store.fragments_after(stream, None)
    assert len(kept) == ZERO_RETENTION_FRAGMENTS
    assert kept[-1].number == store.last_number(stream)
