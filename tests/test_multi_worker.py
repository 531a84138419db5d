"""Two local worker processes on loopback ports train one run under `multi_worker` (TF_CONFIG)."""

import csv
import json
import os
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
def test_two_workers_train_and_resume_with_only_the_chief_writing(tiny_recipe_file, tmp_path, trained_run):
    # Each worker gets its own --out, as on two machines: the chief's must hold the run, the other's must not exist.
    chief_out, worker_out = tmp_path / "chief", tmp_path / "worker1"
    first = run_workers(tiny_recipe_file, [chief_out, worker_out], epochs=1)
    assert "multi_worker strategy, 2 replicas on 2 workers (this one: chief)" in first[0]
    assert "(this one: worker 1)" in first[1]
    assert not worker_out.exists()
    assert (chief_out / "checkpoints" / "epoch-0001.weights.h5").exists() and (chief_out / "model.weights.h5").exists()

    # Both processes restart (as after a lost worker): the chief restores epoch 1 and hands it to worker 1.
    second = run_workers(tiny_recipe_file, [chief_out, worker_out], epochs=2)
    for err in second:
        assert "resuming run" in err and "epoch 1 of 2" in err
    assert not worker_out.exists()
    assert json.loads((chief_out / "checkpoints" / "state.json").read_text())["epoch"] == 2

    # Each worker takes one half of every global batch, so two workers see what one device sees
    # (the session's tiny run: same recipe and seed, 2 epochs straight). Measured here: equal to 7
    # digits (3.4152558 and 2.3806730 per epoch); 0.2%, as for mirrored, allows other CPUs' rounding.
    assert losses(chief_out) == pytest.approx(losses(trained_run), rel=2e-3)
