"""Shared fixtures: each stack file evaluated once under the mocks, graph recorded."""

from __future__ import annotations

import pytest

from tests.harness import STACKS, Graph, evaluate

_cache: dict[str, Graph] = {}


def stack_graph(stack: str) -> Graph:
    if stack not in _cache:
        graph = evaluate(stack)
        if graph.error is not None:
            raise graph.error
        _cache[stack] = graph
    return _cache[stack]


def pytest_collection_modifyitems(items):
    """A test that asks for the shared Triton server starts it: `make test-fast` leaves it out."""
    for item in items:
        if "local_triton" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)


@pytest.fixture(params=STACKS)
def graph(request) -> Graph:
    """The recorded graph of every shipped stack, one test run per stack."""
    return stack_graph(request.param)


@pytest.fixture
def dev() -> Graph:
    return stack_graph("dev")


@pytest.fixture
def staging() -> Graph:
    return stack_graph("staging")


@pytest.fixture
def prod() -> Graph:
    return stack_graph("prod")


@pytest.fixture(scope="session")
def local_triton(tmp_path_factory):
    """A real tritonserver on loopback serving twins of model_repo/ (shared by the tests)."""
    from modelrepo import repository
    from tests.harness import ROOT_DIR
    from tools.models.serve import TritonServer, write_twins

    twins = write_twins(repository.load(ROOT_DIR / "model_repo"),
                        tmp_path_factory.mktemp("twins") / "repo")
    with TritonServer(str(twins)) as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def no_server_outlives_the_tests():
    """Every tritonserver a test starts is stopped by the tests themselves."""
    yield
    from tools.models.serve import TritonServer

    assert not TritonServer.running, f"tritonserver still running: {TritonServer.running}"
