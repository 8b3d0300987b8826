"""``interir-bench cluster``: the job plan, the sbatch scripts, the pre-flight checks and failure reports (fast),
and the whole flow on a real single-node SLURM cluster (slow, root only).

The slow test starts munged, slurmctld and slurmd (Debian's ``slurm-wlm``, installed with apt-get when
missing) in a temporary folder, bound to 127.0.0.1 on free ports, and an MLflow tracking server; submits the
smoke matrix of a miniature project (nafnet and interir, a few steps) as SLURM jobs that push to a
local-folder DVC remote; gathers the results in another clone; and compares the tables and metrics with a
one-machine ``dvc repro`` of the same project. A second submission trains with two torchrun processes per
job. Every daemon is stopped by its pid at the end, also on failure. ``make test-all`` runs it (about 6 min
on 2 shared cores).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.commands import cluster
from pipelines.common.config import load_params
from pipelines.common.env import UserError
from tests.conftest import REPO, free_port, running_mlflow_server

BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------------------ fast
def test_the_plan_is_repro_s_chains_after_synthesize() -> None:
    params = load_params(REPO / "params.yaml")
    jobs = cluster.plan(params)
    assert jobs[0].targets == ("synthesize",) and not jobs[0].after_synthesize
    chains = [j for j in jobs if j.trains]
    assert [j.targets for j in chains] == [(f"train@{m}-{s}", f"evaluate@{m}-{s}")
                                           for m in params.models for s in params.seeds]
    assert [j.name for j in jobs[len(chains) + 1:]] == ["score_inputs", "profile"]
    assert all(j.after_synthesize for j in jobs[1:-1]) and not jobs[-1].after_synthesize  # profile reads no data


def test_resources_come_from_params_and_flags() -> None:
    cfg = load_params(REPO / "params.yaml", "paper").cluster
    res = cluster.Resources.from_config(cfg)
    assert (res.cpus, res.gpus, res.nproc, res.time_min) == (cfg.cpus_per_job, cfg.gpus_per_job, 1, cfg.time_min)
    res = cluster.Resources.from_config(cfg, partition="gpu", gpus=4, time_min=60)
    assert (res.partition, res.gpus, res.nproc, res.time_min) == ("gpu", 4, 4, 60)  # torchrun: one per GPU
    assert cluster.Resources.from_config(cfg, gpus=0, nproc=2).nproc == 2  # CPU processes (gloo)
    with pytest.raises(UserError):
        cluster.Resources.from_config(cfg, cpus=0)


def test_sbatch_scripts(tmp_path: Path) -> None:
    params = load_params(REPO / "params.yaml", "paper")
    res = cluster.Resources.from_config(params.cluster, partition="gpu", gpus=2, mem_gb=64)
    chain, score = cluster.plan(params)[1], cluster.plan(params)[-2]
    script = cluster.make_executor("slurm", tmp_path, res, chain, Path("/shared/interir-bench"), "17") \
        ._executor._make_submission_file_text("CMD", "uid")
    for line in ("--chdir=/shared/interir-bench", "--dependency=afterok:17", "--gpus-per-node=2", "--partition=gpu",
                 f"--cpus-per-task={res.cpus}", f"--time={res.time_min}", "--mem=64GB", "--ntasks-per-node=1",
                 "--signal=USR2@90"):
        assert f"#SBATCH {line}\n" in script, (line, script)
    script = cluster.make_executor("slurm", tmp_path, res, score, Path("/p"), None) \
        ._executor._make_submission_file_text("CMD", "uid")
    assert "gpus" not in script and "dependency" not in script  # score_inputs needs no GPU


def test_jobs_need_a_tracking_server_and_a_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(UserError, match="tracking server"):
        cluster.tracking_uri_for_jobs(allow_local=False)
    assert cluster.tracking_uri_for_jobs(allow_local=True) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert cluster.tracking_uri_for_jobs(allow_local=False) == "http://127.0.0.1:5000"
    with pytest.raises(UserError, match="does not answer"):
        cluster.check_server(f"http://127.0.0.1:{free_port()}", timeout=2)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(UserError, match="MLFLOW_TRACKING_URI"):
        cluster.tracking_uri_for_jobs(allow_local=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="no dvc.yaml"):
        cluster.submit(load_params(REPO / "params.yaml"), cluster.Resources("", 1, 0, 0, 5, 0, 1), "local")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    with pytest.raises(UserError, match="not divisible by 3"):
        cluster.submit(load_params(REPO / "params.yaml"), cluster.Resources("", 1, 0, 0, 5, 0, 3), "local")
    with pytest.raises(UserError, match="default DVC remote"):
        cluster.submit(load_params(REPO / "params.yaml"), cluster.Resources("", 1, 0, 0, 5, 0, 1), "local",
                       allow_local_store=True)


@pytest.mark.integration
def test_a_failed_job_is_reported_with_its_logs(tmp_path: Path) -> None:
    """A job whose ``dvc repro`` fails (here: not a DVC repository), run by submitit's local executor."""
    import submitit

    ex = submitit.AutoExecutor(folder=tmp_path / "jobs" / "%j", cluster="local")
    ex.update_parameters(timeout_min=5)
    log = tmp_path / "dvc-logs" / "nafnet-0.log"
    spec = cluster.JobSpec("nafnet-0", ("train@nafnet-0", "evaluate@nafnet-0"), trains=True, after_synthesize=True)
    job = ex.submit(cluster.StageJob(str(tmp_path), spec.targets, {}, False, str(log)))
    messages: list[str] = []
    failed = cluster.wait([cluster.Submitted(spec, job, log)], "local", poll_s=0.5, echo=messages.append)
    assert len(failed) == 1 and failed[0].state == "FAILED"
    text = "\n".join(messages)
    assert "FAILED train@nafnet-0 -> evaluate@nafnet-0" in text and "dvc repro -s train@nafnet-0" in text
    assert str(job.paths.stderr) in text and str(log) in text  # where to look
    assert "$ dvc repro -s train@nafnet-0 evaluate@nafnet-0" in log.read_text()


# ------------------------------------------------------------------------------------------------ slow: SLURM
def _slurm_missing() -> str | None:
    """Why the SLURM test cannot run here (None: it can, after installing slurm-wlm and munge if needed)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (it starts munged, slurmctld and slurmd)"
    if all(shutil.which(b) for b in ("sbatch", "slurmctld", "slurmd", "munged")):
        return None
    if shutil.which("apt-get") is None:
        return "slurm-wlm and munge are missing and there is no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "slurm-wlm", "munge"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        proc = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return f"apt-get install slurm-wlm munge failed: {proc.stderr[-500:]}"
    return None


def _stop(pid_file: Path, timeout: float = 15.0) -> None:
    """SIGTERM the daemon named in ``pid_file`` (SIGKILL after ``timeout``)."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def single_node_slurm(folder: Path) -> Iterator[dict[str, str]]:
    """munged, slurmctld and slurmd for this host only (2 CPUs, no cgroups, no accounting), state in ``folder``,
    listening on 127.0.0.1 at free ports; yields the environment that points SLURM's commands at it."""
    host = socket.gethostname().split(".")[0]
    munge = folder / "munge"
    for d in (munge, folder / "state", folder / "spool", folder / "log"):
        d.mkdir(parents=True, exist_ok=True)
    munge.chmod(0o700)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    sock = munge / "munge.socket"
    conf = folder / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=interirtest", f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
        "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={sock}",
        "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny",  # bind 127.0.0.1 (what the host resolves to)
        f"StateSaveLocation={folder / 'state'}", f"SlurmdSpoolDir={folder / 'spool'}",
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}", f"SlurmdPidFile={folder / 'slurmd.pid'}",
        f"SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={folder / 'log' / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",  # no systemd, no cgroups
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none", "MpiDefault=none", "MailProg=/bin/true",
        "SchedulerParameters=sched_interval=2", "DependencyParameters=kill_invalid_depend", "MinJobAge=3600",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started: list[Path] = []
    try:
        # munged refuses root unless forced; its own key, socket and files, so any system munged is left alone
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={sock}",
                        f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
                        f"--seed-file={munge / 'munged.seed'}"], check=True, env=env)
        started.append(munge / "munged.pid")
        for daemon, pid in (("slurmctld", "slurmctld.pid"), ("slurmd", "slurmd.pid")):
            started.append(folder / pid)
            subprocess.run([daemon, "-f", str(conf)], check=True, env=env)  # each daemonises itself
        deadline = time.monotonic() + 60
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True,
                                           check=False).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError("the SLURM node never became idle:\n"
                                   + (folder / "log" / "slurmctld.log").read_text()[-2000:])
            time.sleep(0.5)
        yield env
    finally:
        ids = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True,
                             check=False).stdout.split()
        if ids:
            subprocess.run(["scancel", *ids], env=env, check=False)
            time.sleep(3)
        for pid_file in (folder / "slurmd.pid", folder / "slurmctld.pid", munge / "munged.pid"):
            if pid_file in started:
                _stop(pid_file)


def _run(cwd: Path, env: dict[str, str], *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def _project_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "INTERIR_DATA", "DVC_ROOT",
                                                             "PYTHONPATH", "SLURM_CONF")}
    return {**env, "PATH": f"{BIN}:{env['PATH']}", "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", **extra}


COMPARED = ("reports/tables/*.csv", "results/eval/*/metrics.json", "results/train/*/train.json")


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A miniature project (nafnet and interir) run as SLURM jobs, gathered in another clone; and the same
    project reproduced on one machine."""
    reason = _slurm_missing()
    if reason:
        pytest.skip(reason)
    from tests.test_workflow import make_project

    tmp = tmp_path_factory.mktemp("cluster")
    origin = make_project(tmp / "shared-checkout", models=("nafnet", "interir"))
    plain = _project_env()
    _run(origin, plain, "dvc", "remote", "add", "-d", "shared", str(tmp / "dvc-remote"))
    _run(origin, plain, "git", "commit", "-qam", "a DVC remote every node reaches")
    one = tmp / "one-machine"
    _run(tmp, plain, "git", "clone", "-q", str(origin), str(one))
    t0 = time.perf_counter()
    _run(one, plain, "dvc", "repro")  # the reference: every stage in one process after another, local MLflow store
    out = {"one": one, "origin": origin, "one_machine_s": time.perf_counter() - t0}
    (tmp / "mlflow").mkdir()
    with single_node_slurm(tmp / "slurm") as slurm_env, running_mlflow_server(tmp / "mlflow") as uri:
        env = _project_env(SLURM_CONF=slurm_env["SLURM_CONF"], MLFLOW_TRACKING_URI=uri)
        t0 = time.perf_counter()
        sub = _run(origin, env, sys.executable, "-m", "pipelines.cli", "cluster", "submit", "--wait",
                   "--cpus-per-job", "1", "--time", "20")
        out["submit_s"] = time.perf_counter() - t0
        out["submit_out"] = sub.stdout
        out["record"] = json.loads((origin / cluster.JOBS_DIR / cluster.RECORD).read_text())
        _run(origin, env, sys.executable, "-m", "pipelines.cli", "cluster", "gather")
        _run(origin, env, "git", "add", "-A")
        _run(origin, env, "git", "commit", "-qm", "the cluster run: dvc.lock and metrics")
        elsewhere = tmp / "elsewhere"
        _run(tmp, env, "git", "clone", "-q", str(origin), str(elsewhere))
        t0 = time.perf_counter()
        out["gather_out"] = _run(elsewhere, env, sys.executable, "-m", "pipelines.cli", "cluster", "gather").stdout
        out["gather_s"] = time.perf_counter() - t0
        out["elsewhere"] = elsewhere
        import mlflow

        mlflow.set_tracking_uri(uri)
        out["runs"] = mlflow.search_runs(experiment_names=["interir-bench/smoke"], output_format="list",
                                         filter_string="tags.role = 'reproduced'")
        out["artifacts"] = {r.info.run_id: {a.path for a in mlflow.MlflowClient().list_artifacts(r.info.run_id)}
                            for r in out["runs"]}
        # Two training processes per job (torchrun inside the SLURM job, gloo on the CPU): nafnet alone, in a
        # clone of the first commit with its own SQLite store, nothing pushed.
        ddp = tmp / "ddp-checkout"
        _run(tmp, env, "git", "clone", "-q", str(origin), str(ddp))
        _run(ddp, env, "git", "checkout", "-q", "HEAD~1")
        import yaml

        raw = yaml.safe_load((ddp / "params.yaml").read_text())
        raw["models"] = ["nafnet"]
        (ddp / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        _run(ddp, env, sys.executable, "-m", "pipelines.cli", "cluster", "submit", "--wait", "--nproc-per-job", "2",
             "--cpus-per-job", "2", "--time", "20", "--no-push", "--local-store")
        out["ddp"] = ddp
    print(f"\none machine (dvc repro): {out['one_machine_s']:.0f} s; cluster submit --wait: {out['submit_s']:.0f} s; "
          f"gather in a clone: {out['gather_s']:.0f} s\n{out['submit_out']}")
    return out


@pytest.mark.slow
@pytest.mark.integration
def test_jobs_ran_side_by_side_on_slurm(cluster_run: dict) -> None:
    jobs = cluster_run["record"]["jobs"]
    assert [j["state"] for j in jobs] == ["COMPLETED"] * 5, jobs
    assert [j["name"] for j in jobs] == ["synthesize", "nafnet-0", "interir-0", "score_inputs", "profile"]
    assert all(j["result"]["slurm_job_id"] == j["job_id"] for j in jobs)  # each ran as its SLURM job
    spans = {j["name"]: (j["result"]["start"], j["result"]["end"]) for j in jobs}
    overlaps = {(a, b): min(spans[a][1], spans[b][1]) - max(spans[a][0], spans[b][0])
                for a, b in itertools.combinations(spans, 2)}
    assert max(overlaps.values()) > 1.0, spans  # two jobs at once (2 CPUs, one per job)
    synth_end = spans["synthesize"][1]
    assert all(spans[n][0] >= synth_end - 0.5 for n in ("nafnet-0", "interir-0", "score_inputs"))  # afterok


@pytest.mark.slow
@pytest.mark.integration
def test_runs_reached_the_tracking_server(cluster_run: dict) -> None:
    runs = {r.data.tags["model"]: r for r in cluster_run["runs"]}
    assert set(runs) == {"nafnet", "interir"}
    for r in runs.values():
        assert r.info.status == "FINISHED"
        assert "train/loss" in r.data.metrics and "MDIR/psnr" in r.data.metrics  # train and evaluate, one run
        assert "checkpoint" in cluster_run["artifacts"][r.info.run_id]


@pytest.mark.slow
@pytest.mark.integration
def test_a_job_trains_under_torchrun(cluster_run: dict) -> None:
    """--nproc-per-job 2: the job sets INTERIR_NPROC_PER_NODE and the train stage DVC starts runs under torchrun."""
    from pipelines.engine import checkpoint as ckpt_io

    ddp = cluster_run["ddp"]
    assert ckpt_io.load(ddp / "results/train/nafnet-s0/model.pt")["world_size"] == 2
    log = (ddp / cluster.JOBS_DIR / "dvc-logs" / "nafnet-0.log").read_text()
    assert "INTERIR_NPROC_PER_NODE=2: -m torch.distributed.run --standalone --nproc_per_node 2" in log
    assert json.loads((ddp / "results/eval/nafnet-s0/metrics.json").read_text())["MDIR"]["n"] > 0


@pytest.mark.slow
@pytest.mark.integration
def test_gathered_results_equal_a_one_machine_run(cluster_run: dict) -> None:
    elsewhere, one = cluster_run["elsewhere"], cluster_run["one"]
    assert "Running stage" not in (elsewhere / cluster.JOBS_DIR / "gather.log").read_text()  # pulled, not computed
    assert _run(elsewhere, _project_env(), "git", "status", "--porcelain").stdout == ""  # dvc.lock unchanged
    assert (elsewhere / "reports" / "index.html").is_file()
    files = sorted({p.relative_to(one) for pattern in COMPARED for p in one.glob(pattern)})
    assert len(files) >= 8, files
    for rel in files:
        assert (elsewhere / rel).read_bytes() == (one / rel).read_bytes(), rel
    lock_one = json.dumps(_outs(one / "dvc.lock"), sort_keys=True)
    assert json.dumps(_outs(elsewhere / "dvc.lock"), sort_keys=True) == lock_one  # same output hashes everywhere


def _outs(lock: Path) -> dict[str, list]:
    """Output hashes per stage of a dvc.lock."""
    import yaml

    stages = yaml.safe_load(lock.read_text())["stages"]
    return {name: sorted((o["path"], o.get("md5", "")) for o in st.get("outs", [])) for name, st in stages.items()}
