import pytest

from service.config import load_settings
from service.errors import ConfigError
from service.run.granian_workers import Layout, auto_workers, granian_env, workers


@pytest.mark.parametrize(
    ("cores", "consumer_beside", "expected"),
    [(1, False, 1), (1, True, 1), (2, False, 1), (2, True, 1), (4, False, 3), (8, True, 6)],
)
def test_auto_leaves_a_core_for_granians_io_and_one_for_the_consumer(
    cores: int, consumer_beside: bool, expected: int
) -> None:
    assert auto_workers(cores, consumer_beside) == expected


def test_http_workers_is_auto_by_default_and_an_explicit_count_wins() -> None:
    assert load_settings({}).http_workers is None
    assert load_settings({"HTTP_WORKERS": "AUTO"}).http_workers is None
    assert workers(load_settings({"HTTP_WORKERS": "3"}).http_workers, consumer_beside=True) == 3


@pytest.mark.parametrize("value", ["0", "65", "two", "²", "-1", "1.5"])
def test_a_bad_worker_count_names_both_accepted_forms(value: str) -> None:
    with pytest.raises(ConfigError, match=rf"'HTTP_WORKERS' has value '{value}'.*'auto' or an"):
        load_settings({"HTTP_WORKERS": value})


def test_granians_own_variables_override_the_measured_runtime_options() -> None:
    env = granian_env({"GRANIAN_TASK_IMPL": "rust", "PATH": "/bin"}, workers=1)
    assert env["GRANIAN_TASK_IMPL"] == "rust"
    assert env["GRANIAN_RUNTIME_MODE"] == "mt"
    assert env["PATH"] == "/bin"


def test_a_lone_worker_gets_two_runtime_threads_and_several_workers_one_each() -> None:
    assert granian_env({}, workers=1)["GRANIAN_RUNTIME_THREADS"] == "2"
    assert granian_env({}, workers=3) == Layout(3).runtime_env()
