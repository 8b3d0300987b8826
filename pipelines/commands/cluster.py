"""``interir-bench cluster submit|gather``: the pipeline's independent stages as SLURM jobs, through submitit.

``submit`` sends one job per independent piece of the pipeline, the same pieces ``interir-bench repro`` runs
side by side on one machine (:func:`pipelines.common.dvcrun.chains`): ``synthesize`` first, then one
``train@M-S -> evaluate@M-S`` chain per (model, seed), ``score_inputs`` and ``profile``. A job runs, in the
project's checkout on the shared filesystem, exactly what ``repro`` runs there: ``dvc repro -s TARGETS``,
retrying DVC's repository lock (:func:`pipelines.common.dvcrun.dvc`), then ``dvc push TARGETS`` to the
default DVC remote. DVC runs the stage commands of ``dvc.yaml``; with ``--gpus-per-job G`` (G >= 2) the job
sets ``INTERIR_NPROC_PER_NODE=G`` and the train stage starts itself under ``torchrun --standalone
--nproc_per_node G`` (:mod:`pipelines.engine.distributed`), so ``dvc.yaml`` stays the one description of
what a stage runs. The runs go to the MLflow tracking server of ``$MLFLOW_TRACKING_URI``.

SLURM places the jobs; the chains and ``score_inputs`` wait for ``synthesize`` through a SLURM dependency
(``afterok``). The launcher only submits, and with ``--wait`` waits and names every failed job with its
logs. A job that reaches its time limit is requeued by submitit (``cluster.requeues`` times) and its
training resumes from ``checkpoints/<run>/last.pt``.

``gather`` (any machine with the checkout at the commit holding the cluster run's ``dvc.lock``): ``dvc pull``
from the remote, a check that every stage but the report is up to date (it never trains), ``dvc repro``
(the report), the page, and ``dvc push`` of the report's outputs. README, "Running on a SLURM cluster".
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import submitit

from pipelines.common import dvcrun, env, paths
from pipelines.common.config import ClusterConfig, Params, load_params
from pipelines.common.env import UserError

JOBS_DIR = Path(".dvc/tmp/cluster")  # submitit's job folders and pickles, the DVC logs, jobs.json
RECORD = "jobs.json"
NPROC_ENV = "INTERIR_NPROC_PER_NODE"  # = pipelines.engine.distributed.NPROC_ENV (not imported: it loads torch)
SERVER_SCHEMES = ("http://", "https://", "databricks")
# Passed to every job explicitly (SLURM usually exports the submitting environment too, but sites differ).
JOB_ENV = ("MLFLOW_TRACKING_URI", "INTERIR_DATA")
# SLURM job states after which no result will come (squeue/scontrol/sacct spelling).
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
                "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}
GRACE_S = 60.0  # a finished job's result file may reach this machine's view of a network filesystem late


@dataclasses.dataclass(frozen=True)
class Resources:
    """What every job asks SLURM for (``cluster`` in params.yaml, overridden by the flags)."""

    partition: str
    cpus: int
    gpus: int  # per chain job; synthesize, score_inputs and profile ask for none
    mem_gb: int
    time_min: int
    requeues: int
    nproc: int  # training processes per chain job (torchrun when >= 2)

    @classmethod
    def from_config(cls, cfg: ClusterConfig, partition: str | None = None, cpus: int | None = None,
                    gpus: int | None = None, mem_gb: int | None = None, time_min: int | None = None,
                    nproc: int | None = None) -> Resources:
        pick = lambda flag, default: default if flag is None else flag  # noqa: E731
        res = cls(pick(partition, cfg.partition), pick(cpus, cfg.cpus_per_job), pick(gpus, cfg.gpus_per_job),
                  pick(mem_gb, cfg.mem_gb), pick(time_min, cfg.time_min), cfg.requeues, 0)
        res = dataclasses.replace(res, nproc=pick(nproc, max(1, res.gpus)))
        if res.cpus < 1 or res.time_min < 1 or res.gpus < 0 or res.mem_gb < 0 or res.nproc < 1:
            raise UserError(f"cluster resources out of range: {res}")
        return res


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One job: the DVC targets it reproduces and pushes, and whether it waits for ``synthesize``."""

    name: str
    targets: tuple[str, ...]
    trains: bool  # a train -> evaluate chain: gets the GPUs and the torchrun processes
    after_synthesize: bool


def plan(params: Params) -> list[JobSpec]:
    """``synthesize``, then what ``interir-bench repro`` runs side by side: the chains, score_inputs, profile."""
    jobs = [JobSpec("synthesize", ("synthesize",), trains=False, after_synthesize=False)]
    for targets in dvcrun.chains(list(params.models), list(params.seeds)):
        trains = targets[0].startswith("train@")
        name = targets[0].split("@", 1)[1] if trains else targets[0]
        # profile reads no data: it need not wait for synthesize
        jobs.append(JobSpec(name, tuple(targets), trains=trains, after_synthesize=targets != ["profile"]))
    return jobs


class StageJob(submitit.helpers.Checkpointable):
    """What a job runs on its node: ``dvc repro -s TARGETS`` in the shared checkout, then ``dvc push TARGETS``.

    Checkpointable: when SLURM's time limit comes, submitit requeues the same call, and the train stage,
    started again by DVC, resumes from its last checkpoint.
    """

    def __init__(self, root: str, targets: tuple[str, ...], job_env: dict[str, str], push: bool, log: str) -> None:
        self.root, self.targets, self.job_env, self.push, self.log = root, tuple(targets), dict(job_env), push, log

    def __call__(self) -> dict[str, Any]:
        start = time.time()
        os.chdir(self.root)
        os.environ.update(self.job_env)
        # The environment's executables first: dvc itself, and the `python` of dvc.yaml's stage commands.
        os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
        env.apply_defaults()
        log = Path(self.log)
        log.parent.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        print(f"{' -> '.join(self.targets)} on {host} in {self.root}; DVC log: {log}", flush=True)
        dvcrun.dvc(["repro", "-s", *self.targets], log)
        if self.push:
            dvcrun.dvc(["push", *self.targets], log)
        end = time.time()
        print(f"done in {end - start:.0f} s", flush=True)
        return {"targets": list(self.targets), "host": host, "start": start, "end": end,
                "slurm_job_id": os.environ.get("SLURM_JOB_ID", "")}


@dataclasses.dataclass
class Submitted:
    spec: JobSpec
    job: Any  # submitit.Job
    dvc_log: Path
    state: str = "PENDING"
    result: dict[str, Any] | None = None
    error: str = ""
    final_seen: float | None = None  # when SLURM first called the job finished without a result on disk

    def record(self) -> dict[str, Any]:
        return {"name": self.spec.name, "targets": list(self.spec.targets), "job_id": str(self.job.job_id),
                "state": self.state, "stdout": str(self.job.paths.stdout), "stderr": str(self.job.paths.stderr),
                "dvc_log": str(self.dvc_log), **({"result": self.result} if self.result else {}),
                **({"error": self.error} if self.error else {})}


# ------------------------------------------------------------------------------------------------ pre-flight
def tracking_uri_for_jobs(allow_local: bool) -> str | None:
    """``$MLFLOW_TRACKING_URI`` when it names a server; None (the checkout's own SQLite store) only with
    ``allow_local``, which suits one node or a filesystem with working file locks."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith(SERVER_SCHEMES):
        return uri
    if allow_local:
        return uri or None
    raise UserError("jobs log their runs to an MLflow tracking server: start one (README, 'Running on a SLURM "
                    "cluster') and export MLFLOW_TRACKING_URI=http://<host>:<port> (a host the compute nodes "
                    f"reach); got {uri or 'nothing'}. --local-store uses the checkout's mlflow.db instead")


def check_server(uri: str, timeout: float = 10.0) -> None:
    """Fail now, not in every job, when the tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            if resp.status == 200:
                return
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"the MLflow tracking server {uri} does not answer ({exc})") from None
    raise UserError(f"the MLflow tracking server {uri} does not answer /health with 200")


def default_remote() -> str | None:
    """The default DVC remote's name, or None."""
    proc = subprocess.run(["dvc", "remote", "default"], capture_output=True, text=True, check=False)
    name = proc.stdout.strip()
    return name if proc.returncode == 0 and name else None


def _check_checkout() -> Path:
    root = Path.cwd().resolve()
    if not (root / "dvc.yaml").is_file():
        raise UserError(f"no dvc.yaml in {root}: run from the project's checkout on the shared filesystem")
    if shutil.which("dvc") is None:
        raise UserError("dvc is not on PATH (activate the project's environment)")
    return root


# ------------------------------------------------------------------------------------------------ submit
def make_executor(kind: str, folder: Path, res: Resources, spec: JobSpec, root: Path,
                  after: str | None) -> submitit.AutoExecutor:
    """A submitit executor with this job's resources; ``after`` = the SLURM job id it must wait for."""
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=kind, **{f"{kind}_max_num_timeout": res.requeues})
    gpus = res.gpus if spec.trains else 0
    params: dict[str, Any] = {"name": f"ib-{spec.name}", "timeout_min": res.time_min, "nodes": 1,
                              "tasks_per_node": 1, "cpus_per_task": res.cpus}
    if gpus:
        params["gpus_per_node"] = gpus
    if res.mem_gb:
        params["mem_gb"] = res.mem_gb
    if kind == "slurm":
        params["slurm_additional_parameters"] = {"chdir": str(root)}
        if res.partition:
            params["slurm_partition"] = res.partition
        if after:
            params["slurm_dependency"] = f"afterok:{after}"
    ex.update_parameters(**params)
    return ex


def submit(params: Params, res: Resources, kind: str = "slurm", push: bool = True, allow_local_store: bool = False,
           echo: Callable[[str], None] = lambda m: print(m, flush=True)) -> list[Submitted]:
    """Check the set-up, create the MLflow experiment once, submit every job; returns them."""
    root = _check_checkout()
    if params.train.batch % res.nproc:
        raise UserError(f"train batch {params.train.batch} (global) is not divisible by {res.nproc} training processes")
    if kind == "slurm" and shutil.which("sbatch") is None:
        raise UserError("sbatch is not on PATH: run on a SLURM login node (or --executor local for local processes)")
    uri = tracking_uri_for_jobs(allow_local_store)
    if uri:
        check_server(uri)
    if push and default_remote() is None:
        raise UserError("jobs push their outputs to the default DVC remote, and none is set: "
                        "dvc remote add -d <name> <url> (a folder every node mounts, s3://..., ssh://...); "
                        "or --no-push")
    from pipelines.common import tracking

    tracking.setup(params.profile)  # the experiment (or the SQLite store) exists before jobs race to create it
    folder = (root / JOBS_DIR).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    job_env = {k: os.environ[k] for k in JOB_ENV if os.environ.get(k)}
    jobs: list[Submitted] = []
    synth: Submitted | None = None
    for spec in plan(params):
        run_env = {**job_env, NPROC_ENV: str(res.nproc)} if spec.trains and res.nproc > 1 else job_env
        log = folder / "dvc-logs" / f"{spec.name}.log"
        log.unlink(missing_ok=True)
        if synth is not None and spec.after_synthesize and kind != "slurm" and synth.state != "COMPLETED":
            _wait_for(synth, kind)  # submitit's local executor has no dependencies: let synthesize finish
            if synth.state != "COMPLETED":
                raise UserError(describe_failure(synth))
        after = str(synth.job.job_id) if synth is not None and spec.after_synthesize and kind == "slurm" else None
        ex = make_executor(kind, folder, res, spec, root, after)
        job = ex.submit(StageJob(str(root), spec.targets, run_env, push, str(log)))
        sub = Submitted(spec, job, log)
        jobs.append(sub)
        if spec.name == "synthesize":
            synth = sub
        echo(f"  job {job.job_id}: {' -> '.join(spec.targets)}" + (f" (after {after})" if after else ""))
    write_record(folder, jobs, res)
    return jobs


def write_record(folder: Path, jobs: list[Submitted], res: Resources) -> Path:
    out = folder / RECORD
    data = {"submitted": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "resources": dataclasses.asdict(res), "jobs": [j.record() for j in jobs]}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, out)
    return out


# ------------------------------------------------------------------------------------------------ wait
def slurm_state(job_id: str) -> str:
    """The job's state as slurmctld reports it (``scontrol``; no accounting database needed), or UNKNOWN."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, check=False)
    for field in proc.stdout.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    if proc.returncode != 0:  # purged from slurmctld's memory (MinJobAge): ask the accounting database
        acct = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "State", "-j", str(job_id)], capture_output=True,
                              text=True, check=False)
        if acct.returncode == 0 and acct.stdout.strip():
            return acct.stdout.split()[0].split()[0]
    return "UNKNOWN"


def _poll(sub: Submitted, kind: str) -> bool:
    """Update ``sub``; True when it is over (done or failed)."""
    job = sub.job
    if job.paths.result_pickle.exists():
        try:
            sub.result = job.result()
            sub.state = "COMPLETED"
        except Exception as exc:  # the job's Python raised: submitit carries the traceback
            sub.state, sub.error = "FAILED", _last_line(str(exc))
        return True
    if kind == "slurm":
        state = slurm_state(str(job.job_id))
        sub.state = state
        if state.split()[0] not in FINAL_STATES:
            sub.final_seen = None
            return False
    elif not job.done():
        sub.state = "RUNNING"
        return False
    sub.final_seen = sub.final_seen or time.monotonic()
    if time.monotonic() - sub.final_seen < (GRACE_S if kind == "slurm" else 2.0):
        return False
    sub.error = sub.error or f"the job ended ({sub.state}) without a result (time limit, memory, node failure?)"
    sub.state = sub.state if sub.state != "COMPLETED" else "FAILED"
    return True


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln or "error:" in ln]
    return (errors or lines or [""])[-1].strip()


def _wait_for(sub: Submitted, kind: str, poll_s: float = 2.0) -> None:
    while not _poll(sub, kind):
        time.sleep(poll_s)


def describe_failure(sub: Submitted) -> str:
    return (f"FAILED {' -> '.join(sub.spec.targets)} (job {sub.job.job_id}, {sub.state}): {sub.error}\n"
            f"    job log: {sub.job.paths.stderr}  (stdout: {sub.job.paths.stdout})\n"
            f"    DVC log: {sub.dvc_log}")


def wait(jobs: list[Submitted], kind: str = "slurm", poll_s: float = 5.0, res: Resources | None = None,
         echo: Callable[[str], None] = lambda m: print(m, flush=True)) -> list[Submitted]:
    """Wait for every job; report each as it ends; cancel what depends on a failed synthesize.

    Returns the failed jobs (an empty list: all done).
    """
    pending, failed, n = list(jobs), [], 0
    folder = jobs[0].job.paths.folder.parent if jobs else JOBS_DIR
    while pending:
        for sub in list(pending):
            if not _poll(sub, kind):
                continue
            pending.remove(sub)
            n += 1
            if sub.state == "COMPLETED" and sub.result:
                r = sub.result
                echo(f"  [{n}/{len(jobs)}] {' -> '.join(sub.spec.targets)}: done on {r['host']} in "
                     f"{r['end'] - r['start']:.0f} s (job {sub.job.job_id})")
                continue
            failed.append(sub)
            echo("  " + describe_failure(sub))
            if sub.spec.name == "synthesize":
                for other in [o for o in pending if o.spec.after_synthesize]:
                    other.job.cancel(check=False)
                    other.state, other.error = "CANCELLED", "not run: synthesize failed"
                    pending.remove(other)
                    failed.append(other)
                    n += 1
        if res is not None:
            write_record(Path(folder), jobs, res)
        if pending:
            time.sleep(poll_s)
    return failed


# ------------------------------------------------------------------------------------------------ gather
def changed_stages() -> list[str]:
    """Stages whose outputs are missing or out of date (``dvc status``)."""
    proc = subprocess.run(["dvc", "status", "--json"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UserError(f"dvc status failed: {_last_line(proc.stderr or proc.stdout)}")
    text = proc.stdout.strip()
    status = json.loads(text[text.find("{"):]) if "{" in text else {}
    return sorted(name.rsplit(":", 1)[-1] for name in status)


def gather(params_path: Path, pull: bool = True, push: bool = True,
           echo: Callable[[str], None] = lambda m: print(m, flush=True)) -> None:
    """``dvc pull``, check that only the report is left, ``dvc repro``, the page, ``dvc push``."""
    _check_checkout()
    log = JOBS_DIR / "gather.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    remote = default_remote()
    if not os.environ.get("MLFLOW_TRACKING_URI", "").startswith(SERVER_SCHEMES):
        echo("gather: MLFLOW_TRACKING_URI names no tracking server: the report links the runs of the local store")
    if pull and remote:
        echo(f"gather: dvc pull from '{remote}'")
        dvcrun.dvc(["pull", "--allow-missing"], log)
    missing = [s for s in changed_stages() if s != "report"]
    if missing:
        raise UserError(f"not computed (or not pulled): {', '.join(missing)}. gather trains nothing: submit them "
                        f"(interir-bench cluster submit), check the failed jobs' logs ({JOBS_DIR}/{RECORD}), or "
                        "check out the commit holding the cluster run's dvc.lock")
    echo("gather: dvc repro (the report)")
    dvcrun.dvc(["repro"], log)
    dvcrun.build_page(params_path)
    if push and remote:
        dvcrun.dvc(["push"], log)
    echo(f"gather: {paths.REPORT_DIR / 'index.html'}; tables in {paths.REPORT_DIR / 'tables'}; log {log}")


# ------------------------------------------------------------------------------------------------ CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interir-bench cluster", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="action", required=True, metavar="{submit,gather}")
    s = sub.add_parser("submit", help="send the train/evaluate chains (and synthesize, score_inputs, profile) as jobs",
                       description="Defaults of the resource flags: the cluster section of params.yaml "
                                   "(per profile).")
    s.add_argument("--partition", help="SLURM partition (default: cluster.partition; '' = the cluster's default)")
    s.add_argument("--gpus-per-job", type=int, help="GPUs of each train/evaluate job; 2+ trains under torchrun")
    s.add_argument("--nproc-per-job", type=int,
                   help="training processes per job (default: the GPU count, at least 1; 2+ on CPUs uses gloo)")
    s.add_argument("--cpus-per-job", type=int, help="CPUs of each job (cluster.cpus_per_job)")
    s.add_argument("--mem-gb", type=int, help="memory of each job in GB (cluster.mem_gb; 0 = the cluster's default)")
    s.add_argument("--time", type=int, dest="time_min", help="wall-time limit of each job in minutes "
                   "(cluster.time_min); a training job reaching it is requeued and resumes")
    s.add_argument("--wait", action="store_true", help="wait for the jobs and report each one (else print the ids)")
    s.add_argument("--no-push", action="store_true", help="jobs do not dvc push (one shared checkout is enough)")
    s.add_argument("--local-store", action="store_true",
                   help="allow the checkout's SQLite MLflow store instead of a tracking server (one node)")
    s.add_argument("--executor", choices=("slurm", "local"), default="slurm",
                   help="slurm (default), or submitit's local processes (no SLURM; for trying the flow; waits)")
    s.add_argument("--params", default=str(paths.PARAMS))
    g = sub.add_parser("gather", help="dvc pull, then the report (trains nothing), then dvc push")
    g.add_argument("--no-pull", action="store_true")
    g.add_argument("--no-push", action="store_true")
    g.add_argument("--params", default=str(paths.PARAMS))
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    if a.action == "gather":
        gather(Path(a.params), pull=not a.no_pull, push=not a.no_push)
        return 0
    params = load_params(a.params)
    res = Resources.from_config(params.cluster, a.partition, a.cpus_per_job, a.gpus_per_job, a.mem_gb, a.time_min,
                                a.nproc_per_job)
    n = len(plan(params))
    print(f"cluster: {n} jobs ({params.profile} profile) to {a.executor}: {res.cpus} CPU(s), {res.gpus} GPU(s) "
          f"and {res.nproc} training process(es) per train/evaluate job, {res.time_min} min"
          + (f", partition {res.partition}" if res.partition else ""), flush=True)
    jobs = submit(params, res, a.executor, push=not a.no_push, allow_local_store=a.local_store)
    record = JOBS_DIR / RECORD
    if not a.wait and a.executor == "slurm":  # local jobs are this process's children: always waited for
        print(f"cluster: submitted; job logs and {record} under {JOBS_DIR}/. When they are done: "
              "interir-bench cluster gather", flush=True)
        return 0
    t0 = time.perf_counter()
    try:
        failed = wait(jobs, a.executor, res=res)
    except KeyboardInterrupt:
        ids = " ".join(str(j.job.job_id) for j in jobs)
        print(f"cluster: stopped waiting; the jobs keep running (scancel {ids} stops them)", file=sys.stderr)
        raise
    if failed:
        raise UserError(f"{len(failed)} of {len(jobs)} jobs failed (above; record: {record})")
    print(f"cluster: all {len(jobs)} jobs done in {time.perf_counter() - t0:.0f} s; next: interir-bench cluster "
          "gather", flush=True)
    return 0


if __name__ == "__main__":
    from pipelines.common import entry

    sys.exit(entry.run("cluster", main))
