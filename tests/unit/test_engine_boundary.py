"""What the registry accepts as an engine: the Engine protocol, declared, not discovered."""

import pytest

from evalkit.engines import BaseEngine, EngineConfig, create_engine, engine_factory
from evalkit.engines import _base as registry
from evalkit.errors import ConfigError, EngineError

pytestmark = pytest.mark.unit


@pytest.fixture
def register(monkeypatch):
    def add(name, factory):
        monkeypatch.setitem(registry._REGISTRY, name, factory)
    return add


def test_a_base_engine_needs_only_generate_and_gets_the_defaults(register):
    class Echo(BaseEngine):
        name = "echo"

        def __init__(self, config):
            self.config = config

    register("echo", Echo)
    config = EngineConfig(engine="echo", model="m")
    assert engine_factory("echo").identity(config) is None and engine_factory("echo").validate(config) is None
    engine = create_engine(config)
    engine.reset(), engine.restore([]), engine.close()
    assert engine.describe() == {"engine": "echo"}


def test_a_factory_without_validate_and_identity_is_refused(register):
    register("bare", lambda config: BaseEngine())
    with pytest.raises(ConfigError, match="--engine.*'bare'.*lacks validate, identity.*BaseEngine"):
        engine_factory("bare")


def test_an_engine_missing_runner_methods_is_refused_at_boot(register):
    class Partial:
        name = "partial"
        validate = identity = staticmethod(lambda config: None)

        def __init__(self, config):
            pass

        def generate(self, requests):
            return []

        def describe(self):
            return {}

    register("partial", Partial)
    with pytest.raises(EngineError, match="Partial, which lacks reset, restore, close"):
        create_engine(EngineConfig(engine="partial"))
