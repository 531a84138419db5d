"""Two local worker processes on loopback ports train one run under `multi_worker` (TF_CONFIG)."""

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT

TIME_LIMIT = 300  # seconds for both workers together; each process is killed after it


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_workers(recipe, outs, epochs):
    """Starts one `textseq train` per worker, each with its own TF_CONFIG; returns their outputs."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(len(outs))]}
    processes = []
    try:
        for index, out in enumerate(outs):
            env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "textseq", "train", str(recipe), "--out", str(out),
                 "--set", "train.strategy=multi_worker", "--set", f"train.epochs={epochs}"],
                env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        deadline = time.monotonic() + TIME_LIMIT
        results = [p.communicate(timeout=max(1, deadline - time.monotonic())) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    codes = [p.returncode for p in processes]
    assert codes == [0] * len(outs), "\n\n".join(f"worker {i}: {err[-2500:]}" for i, (_, err) in enumerate(results))
    return [err for _, err in results]


def losses(run):
    with open(run / "metrics.csv") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


@pytest.mark.slow
def test_two_workers_train_with_only_the_chief_writing_and_learn_what_one_device_learns(tiny_recipe_file, tmp_path,
                                                                                         trained_run):
    # Each worker gets its own --out, as on two machines: the chief's must hold the run, the other's must not exist.
    chief_out, worker_out = tmp_path / "chief", tmp_path / "worker1"
    logs = run_workers(tiny_recipe_file, [chief_out, worker_out], epochs=2)
    assert "multi_worker strategy, 2 replicas on 2 workers (this one: chief)" in logs[0]
    assert "(this one: worker 1)" in logs[1]
    assert not worker_out.exists()
    assert json.loads((chief_out / "checkpoints" / "state.json").read_text())["epoch"] == 2
    assert (chief_out / "checkpoints" / "epoch-0002.weights.h5").exists() and (chief_out / "model.weights.h5").exists()

    # Each worker takes one half of every global batch, so two workers see what one device sees
    # (the session's tiny run: same recipe and seed, 2 epochs straight). Measured here: equal to 7
    # digits (3.4152558 and 2.3806730 per epoch); 0.2%, as for mirrored, allows other CPUs' rounding.
    # (How a restarted pair of workers resumes: the next test.)
    assert losses(chief_out) == pytest.approx(losses(trained_run), rel=2e-3)


def start_workers(recipe, outs, sets):
    """One `textseq train` process per worker (TF_CONFIG each), not waited for."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(len(outs))]}
    processes = []
    for index, out in enumerate(outs):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "textseq", "train", str(recipe), "--out", str(out),
             "--set", "train.strategy=multi_worker", *[item for s in sets for item in ("--set", s)]],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    return processes


def finish(processes, limit=TIME_LIMIT):
    deadline = time.monotonic() + limit
    try:
        errors = [p.communicate(timeout=max(1, deadline - time.monotonic()))[1] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    assert [p.returncode for p in processes] == [0] * len(processes), "\n\n".join(e[-2500:] for e in errors)
    return errors


@pytest.mark.slow
def test_two_workers_stream_their_own_shards_and_resume_exactly_after_a_kill(tmp_path):
    import yaml

    from conftest import make_shards
    from test_steps import assert_same_weights, steps_recipe

    make_shards(tmp_path, shards=4, pairs=200)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(steps_recipe(tmp_path, steps=20, checkpoint_every=5, validate_every=10)))
    straight, outs = [tmp_path / "straight", tmp_path / "straight-w1"], [tmp_path / "killed", tmp_path / "killed-w1"]
    processes = start_workers(recipe, straight, [])
    state_file = straight[0] / "checkpoints" / "state.json"
    try:
        deadline = time.monotonic() + TIME_LIMIT
        while not (state_file.exists() and json.loads(state_file.read_text() or "{}").get("step", 0) >= 10):
            assert all(p.poll() is None for p in processes), processes[0].stderr.read()[-2000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # What a kill -9 of both workers leaves now is what is on disk now: both frozen, their run
        # directories are copied as they are (a commit may be half-written), and they go on.
        for p in processes:
            p.send_signal(signal.SIGSTOP)
        for source, copy in zip(straight, outs):
            shutil.copytree(source, copy)
    finally:
        for p in processes:
            p.send_signal(signal.SIGCONT)
    finish(processes)
    # Worker 1 reads its own two shards and keeps its position beside the chief's checkpoints.
    assert sorted(p.name for p in (straight[1] / "checkpoints").glob("*.index")) == [
        "step-00000015.resume-w1.index", "step-00000020.resume-w1.index"]
    assert not (straight[1] / "model.weights.h5").exists()

    committed = json.loads((outs[0] / "checkpoints" / "state.json").read_text())["step"]
    assert 10 <= committed < 20
    # Both start again on the copies, as after a lost worker: the chief restores its last commit and
    # hands it to worker 1, which restores its own stream's position.
    errors = finish(start_workers(recipe, outs, []))
    assert all("resuming run" in err and f"step {committed} of 20" in err for err in errors)
    # The run nobody stopped, to the rounding of the all-reduce (measured when the test ran 40 steps:
    # 1 of 12,960 embedding values off by 2e-6); a lost or repeated batch would move every weight.
    assert_same_weights(straight[0] / "checkpoints" / "step-00000020.weights.h5",
                        outs[0] / "checkpoints" / "step-00000020.weights.h5", rtol=1e-4, atol=1e-5)
