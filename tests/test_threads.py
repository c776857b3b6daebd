"""How a run chooses its threads (engines/threads.py) and what its record says about them."""
import os

import numba
import pytest
from threadpoolctl import threadpool_info

from dreamflow_utils import Config, train
from dreamflow_utils.engines import share_cores, threads


def blas_threads():
    return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_prepare_sets_a_short_spin_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    threads.prepare()
    assert os.environ["GOMP_SPINCOUNT"] == threads.SPIN
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")
    threads.prepare()
    assert os.environ["GOMP_SPINCOUNT"] == "7"
    monkeypatch.delenv("GOMP_SPINCOUNT")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    threads.prepare()
    assert "GOMP_SPINCOUNT" not in os.environ


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_a_run_uses_at_most_the_free_cores_and_restores_the_callers_threads(monkeypatch):
    before = numba.get_num_threads()
    monkeypatch.setattr(threads, "free_cores", lambda: 1)  # another process keeps all but one core busy
    with threads.run_threads() as t:
        assert t.adapt() == 1 == numba.get_num_threads()
        assert blas_threads() == {threads.BLAS_THREADS}
    assert numba.get_num_threads() == before
    monkeypatch.setattr(threads, "free_cores", lambda: 64)
    with threads.run_threads() as t:
        assert t.adapt() == before  # never more than the caller allows
    assert t.record() == {"numba": [before], "numba_cap": before, "blas": threads.BLAS_THREADS}


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_the_environment_caps_a_run_even_after_numba_read_its_configuration(monkeypatch):
    """A batch worker's share (NUMBA_NUM_THREADS) holds even when numba was imported before it was set."""
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")
    monkeypatch.setattr(threads, "free_cores", lambda: 64)
    with threads.run_threads() as t:
        assert t.cap == 1 and t.adapt() == 1


def test_free_cores_counts_the_runnable_threads_of_others(monkeypatch):
    monkeypatch.setattr(threads, "cores", lambda: 4)
    monkeypatch.setattr(threads, "running_others", lambda: 3)
    assert threads.free_cores() == 1
    monkeypatch.setattr(threads, "running_others", lambda: 9)
    assert threads.free_cores() == 1
    monkeypatch.setattr(threads, "running_others", lambda: None)  # the system does not say: all cores
    assert threads.free_cores() == 4
    assert threads.running_others() is None or threads.running_others() >= 0


def test_share_cores_tells_the_runs_it_starts_how_many_run_side_by_side(monkeypatch):
    monkeypatch.setenv("NUMBA_NUM_THREADS", "restored after the test")
    monkeypatch.setenv(threads.JOBS_ENV, "restored after the test")
    try:
        share_cores(3)
        assert os.environ[threads.JOBS_ENV] == "3" and threads.load()["jobs"] == 3
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def test_a_record_says_under_what_load_and_on_which_threads_and_code_it_ran():
    from helpers import learnable_data
    r = train(Config(layout="block", C_s=4, N2=20, T_s=200, Nep=2, B=20), learnable_data(200, 50)).record()
    assert set(r["load"]) == {"cores", "jobs", "loadavg", "running_others"} and r["load"]["jobs"] >= 1
    assert r["threads"]["blas"] == threads.BLAS_THREADS and len(r["threads"]["numba"]) >= 1
    assert r["versions"]["commit"] is None or len(r["versions"]["commit"].split("+")[0]) == 40
    assert "blas" in r["versions"]
