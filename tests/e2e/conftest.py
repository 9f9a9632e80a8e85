"""Fixtures of the end-to-end tests: a standalone Kinesis Video endpoint, the watch stack with empty queues, a browser."""

from __future__ import annotations

import pytest

from support.browser import Browser, executable
from support.kvs import endpoint
from support.watch_stack import Stack


@pytest.fixture(scope="module")
def kvs_endpoint(tmp_path_factory):
    """The local Kinesis Video endpoint with the service's defaults, as `kinase local up` starts it."""
    with endpoint(tmp_path_factory.mktemp("kvs-home")) as kvs:
        yield kvs


@pytest.fixture(scope="session")
def stack(local_stack, deployed_stack):
    return Stack(outputs=deployed_stack, endpoint=local_stack["aws_endpoint"])


@pytest.fixture
def fresh(stack):
    """The stack with empty queues."""
    stack.reset()
    return stack


@pytest.fixture(scope="module")
def chromium():
    """Headless Debian chromium driven over the DevTools protocol, for the web view's tests."""
    binary = executable()
    if binary is None:
        pytest.skip("no chromium on PATH: the browser tests need Debian's `chromium` package (apt-get install chromium)")
    browser = Browser(binary)
    yield browser
    browser.close()
