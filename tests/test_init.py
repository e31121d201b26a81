"""plait.init's checks of what it is asked to start, made before anything starts."""

from __future__ import annotations

import pytest

import plait

MIB = 1 << 20


@pytest.mark.parametrize("options, words", [
    ({"store_memory": 64 * MIB, "object_store_memory": 32 * MIB}, "disagree"),
    ({"resources": {"disk": -1}}, "amounts >= 0"),
    ({"resources": {"GPU": 1}}, "GPU is not a custom resource: pass num_gpus"),
    ({"num_gpus": 1, "address": "127.0.0.1:1"}, "joined cluster"),
])
def test_init_refuses_what_cannot_describe_its_nodes(options, words):
    assert not plait.is_initialized()
    with pytest.raises(ValueError, match=words):
        plait.init(**options)
    assert not plait.is_initialized()


def test_init_takes_rays_local_mode_false_and_system_config_and_refuses_local_mode():
    from plait.api import _check_ray_options

    _check_ray_options({"local_mode": False, "_system_config": {"x": 1}, "namespace": "n"})
    with pytest.raises(plait.InvalidOptionError, match="local_mode"):
        _check_ray_options({"local_mode": True})
    with pytest.raises(TypeError, match="unknown option"):
        _check_ray_options({"local_mod": False})
    # Ray's other init keywords about its own processes, logs and ports: taken, not needed
    _check_ray_options({"dashboard_port": 8265, "_temp_dir": "/tmp/r", "labels": {"a": "b"},
                        "logging_format": "%(message)s", "_node_ip_address": "127.0.0.1",
                        "_memory": 1,
                        "job_config": None, "enable_resource_isolation": False})
    with pytest.raises(plait.InvalidOptionError, match="job_config"):
        _check_ray_options({"job_config": object()})


def test_address_auto_without_a_cluster_is_a_connection_error_as_rays(tmp_path, monkeypatch):
    """``try: init("auto") except ConnectionError: init()``, a common Ray pattern."""
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    with pytest.raises(ConnectionError, match="found no cluster") as caught:
        plait.init(address="auto")
    assert isinstance(caught.value, plait.ClusterNotFoundError)
    assert isinstance(caught.value, plait.ClusterError) and not plait.is_initialized()



@pytest.mark.parametrize("runtime_env, error, words", [
    ({"pip": ["requests"]}, NotImplementedError, "runtime_env's pip is not supported"),
    ({"working_dir": "/"}, NotImplementedError, "working_dir is not supported"),
    ({"env_vars": {"A": 1}}, TypeError, "env_vars must map names to str"),
    ("A=1", TypeError, "runtime_env must be a dict"),
])
def test_init_refuses_a_runtime_env_it_would_not_honour(runtime_env, error, words):
    with pytest.raises(error, match=words):
        plait.init(runtime_env=runtime_env)
    assert not plait.is_initialized()


def test_runtime_env_vars_are_refused_where_plait_does_not_start_the_workers():
    with pytest.raises(ValueError, match="runtime_env describe nodes plait.init starts"):
        plait.init(address="127.0.0.1:1", runtime_env={"env_vars": {"A": "1"}})
    with pytest.raises(NotImplementedError, match="the dask engine does not take runtime_env"):
        plait.init(engine="dask", runtime_env={"env_vars": {"A": "1"}})
    assert not plait.is_initialized()
