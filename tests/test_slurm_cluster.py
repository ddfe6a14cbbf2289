"""A real SLURM cluster on this machine: Debian's slurmctld and two slurmd "nodes", each in a network
namespace made here (a bridge and one veth per namespace on a private /24), with munge, all started as
root by the fixture and stopped by PID afterwards (also when a test fails). Jobs are the launcher's own
sbatch scripts (shared.launch), submitted with its submit path, on CPU over gloo:

  * quant_pretraining's smoke scale as 2 tasks on one node computes what one process computes;

and, with tests/workers/slurm_fit.py (shared.engine.fit, its weights saved) as the task:

  * the requeue drill: USR1 to the tasks (what --signal=USR1@120 sends before a job is stopped) makes the
    engine checkpoint and exit REQUEUE_EXIT, the script requeues; then `scontrol requeue` kills the run
    outright (a node failure) and it resumes from its last periodic checkpoint; the weights at the end
    equal the uninterrupted run's, and the environment was prepared once for the three starts;
  * --nodes 2: one task per node, gloo between the namespaces' addresses, each task reporting its own.

Select with `pytest -m root tests/test_slurm_cluster.py`; it skips with a reason off root or without the
binaries (`make setup` as root installs them from shared/apt.txt). Known-good: slurm-wlm 22.05 (Debian 12).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from shared.environment import REPO_ROOT
from shared.launch import SlurmJob, render_job, submit

pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.slurm]

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "scancel", "ip", "nsenter")
STEPS = 40  # of the worker's fit, everywhere: every run below must end with the reference's weights
TIMINGS: dict[str, float] = {}
# Slurm holds a requeued job until the old credential expires (cred_expire, 120 s by default; starting it
# earlier fails with "Job credential revoked"): 10 s keeps the drill short and the requeue path Slurm's own
CRED_EXPIRE_S = 10


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: starts munged, slurmctld and slurmd and makes network namespaces"
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"missing {', '.join(missing)}: `make setup` as root installs them (shared/apt.txt)"
    return None


def free_subnet() -> ipaddress.IPv4Network:
    """A private /24 no interface of this machine is on."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for third in range(100 + os.getpid() % 100, 256):
        net = ipaddress.ip_network(f"10.213.{third}.0/24")
        if f"10.213.{third}." not in used:
            return net
    raise RuntimeError("no free 10.213.x.0/24 subnet")


class Cluster:
    """slurmctld on the bridge's address, slurmd node1 and node2 in namespaces, munged beside them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        tag = f"{os.getpid() % 100000}"
        self.bridge, self.netns = f"slbr{tag}", [f"slurmt{tag}-{i}" for i in (1, 2)]
        net = free_subnet()
        hosts = list(net.hosts())
        self.ctl_addr, self.node_addr = str(hosts[0]), {"node1": str(hosts[1]), "node2": str(hosts[2])}
        self.prefix = net.prefixlen
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.daemons: list[subprocess.Popen] = []
        self.links: list[str] = []
        self.namespaces: list[str] = []

    def sh(self, *cmd: str, check: bool = True) -> str:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=60)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        return proc.stdout

    def network(self) -> None:
        self.sh("ip", "link", "add", self.bridge, "type", "bridge")
        self.links.append(self.bridge)
        self.sh("ip", "addr", "add", f"{self.ctl_addr}/{self.prefix}", "dev", self.bridge)
        self.sh("ip", "link", "set", self.bridge, "up")
        for i, (ns, addr) in enumerate(zip(self.netns, self.node_addr.values(), strict=True)):
            host, peer = f"{self.bridge}h{i}", f"{self.bridge}p{i}"
            self.sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            self.sh("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
            self.links.append(host)
            self.sh("ip", "link", "set", host, "master", self.bridge)
            self.sh("ip", "link", "set", host, "up")
            self.sh("ip", "link", "set", peer, "netns", ns)
            self.sh("ip", "-n", ns, "link", "set", peer, "name", "slurm0")  # GLOO_SOCKET_IFNAME in the jobs
            self.sh("ip", "-n", ns, "addr", "add", f"{addr}/{self.prefix}", "dev", "slurm0")
            self.sh("ip", "-n", ns, "link", "set", "slurm0", "up")
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")

    def write_config(self) -> None:
        r = self.root
        for sub in ("state", "spool/node1", "spool/node2", "run", "log"):
            (r / sub).mkdir(parents=True)
        key = r / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        ports = {"ctl": 16817 + os.getpid() % 1000, "d": 17817 + os.getpid() % 1000}
        nodes = "".join(
            f"NodeName={n} NodeAddr={a} CPUs=2 RealMemory=2000 State=UNKNOWN\n" for n, a in self.node_addr.items()
        )
        self.conf.write_text(
            f"ClusterName=localtest\nSlurmctldHost={os.uname().nodename.split('.')[0]}({self.ctl_addr})\n"
            f"SlurmUser=root\nSlurmdUser=root\nSlurmctldPort={ports['ctl']}\nSlurmdPort={ports['d']}\n"
            f"AuthType=auth/munge\nCredType=cred/munge\nAuthInfo=socket={r}/run/munge.sock,cred_expire={CRED_EXPIRE_S}\n"
            f"StateSaveLocation={r}/state\nSlurmdSpoolDir={r}/spool/%n\n"
            f"SlurmctldPidFile={r}/run/slurmctld.pid\nSlurmdPidFile={r}/run/slurmd-%n.pid\n"
            f"SlurmctldLogFile={r}/log/slurmctld.log\nSlurmdLogFile={r}/log/slurmd-%n.log\n"
            # the settings known to work in a container: no cgroup plugins
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nJobAcctGatherType=jobacct_gather/none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nMpiDefault=none\nMailProg=/bin/true\n"
            "SchedulerParameters=sched_interval=1,bf_interval=1\n"
            "SlurmdParameters=config_overrides\nReturnToService=2\nKillWait=5\nMinJobAge=600\n"
            f"{nodes}PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
        )

    def start(self) -> None:
        self.network()
        self.write_config()
        r = self.root
        self._daemon(
            ["munged", "-F", "-f", f"--socket={r}/run/munge.sock", f"--key-file={r}/munge.key",
             f"--pid-file={r}/run/munged.pid", f"--seed-file={r}/run/munged.seed", f"--log-file={r}/log/munged.log"],
            "munged",
        )  # fmt: skip
        self._wait(lambda: (r / "run" / "munge.sock").exists(), 10, "munged's socket")
        self._daemon(["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld")
        for node, ns in zip(self.node_addr, self.netns, strict=True):
            # nsenter, not `ip netns exec`: that remounts /sys and slurmd then finds no cgroup filesystem
            self._daemon(["nsenter", f"--net=/var/run/netns/{ns}", "slurmd", "-D", "-N", node, "-f", str(self.conf)],
                         f"slurmd-{node}")  # fmt: skip
        self._wait(self.idle, 60, "both nodes idle in sinfo")

    def _daemon(self, cmd: list[str], name: str) -> None:
        out = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 (closed with the process)
        self.daemons.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env))

    def idle(self) -> bool:
        out = self.sh("sinfo", "-h", "-N", "-o", "%N %T", check=False)
        return sorted(out.split()) == sorted(["node1", "idle", "node2", "idle"])

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > end:
                raise RuntimeError(f"timed out waiting for {what}\n{self.logs()}")
            if any(p.poll() is not None for p in self.daemons):
                raise RuntimeError(f"a daemon exited while waiting for {what}\n{self.logs()}")
            time.sleep(0.2)

    def job(self, job_id: str) -> dict[str, str]:
        out = self.sh("scontrol", "show", "job", "-o", job_id, check=False)
        return dict(re.findall(r"(\w+)=(\S*)", out))

    def wait_state(self, job_id: str, states: set[str], timeout: float, log: Path | None = None) -> dict[str, str]:
        end = time.monotonic() + timeout
        while (info := self.job(job_id)).get("JobState") not in states:
            if info.get("JobState") in {"FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"} - states:
                break
            if time.monotonic() > end:
                break
            time.sleep(0.3)
        assert info.get("JobState") in states, f"job {job_id}: {info.get('JobState')}\n{self.logs(log)}"
        return info

    def logs(self, job_log: Path | None = None) -> str:
        files = sorted((self.root / "log").glob("*")) + ([job_log] if job_log and job_log.exists() else [])
        return "\n".join(f"== {f.name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-25:]) for f in files)

    def stop(self) -> None:
        """Cancel every job, stop the daemons by PID, end what their jobs left (by PID: processes whose
        environment names this cluster's slurm.conf), delete the namespaces and links."""
        if self.daemons and all(p.poll() is None for p in self.daemons):
            self.sh("scancel", "--full", "--partition=debug", check=False)
            end = time.monotonic() + 15
            while self.sh("squeue", "-h", check=False).strip() and time.monotonic() < end:
                time.sleep(0.3)
        for proc in reversed(self.daemons):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.daemons):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for pid in self._leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for ns in self.namespaces:  # takes its veth end, and so the pair, with it
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for link in reversed(self.links):
            subprocess.run(["ip", "link", "del", link], capture_output=True)

    def _leftovers(self) -> list[int]:
        mark = f"SLURM_CONF={self.conf}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if mark in (entry / "environ").read_bytes().split(b"\0"):
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="slurmt-", dir="/tmp"))  # short: munge's socket path has a length limit
    c = Cluster(root)
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(c.conf)  # sbatch, run by the launcher's submit, finds this cluster
    try:
        tic = time.perf_counter()
        c.start()
        TIMINGS["cluster start-up s"] = round(time.perf_counter() - tic, 2)
        yield c
    finally:
        c.stop()
        os.environ.pop("SLURM_CONF") if before is None else os.environ.__setitem__("SLURM_CONF", before)
        leftover = c._leftovers()
        shutil.rmtree(root, ignore_errors=True)
        print(f"\nslurm cluster timings: {TIMINGS}")
        assert not leftover, f"processes of the test cluster left running: {leftover}"


@pytest.fixture(scope="module")
def site(cluster: Cluster) -> Path:
    """The launcher's setup hook for this cluster: the interpreter, no pip (a stamp setup that only
    counts its runs), gloo on the namespaces' interface, one thread per task."""
    hook = cluster.root / "site.sh"
    hook.write_text(
        f"export REPRO_PYTHON={sys.executable} REPRO_STAMP_DIR={cluster.root}/stamps\n"
        f'export REPRO_SETUP="echo ran >> {cluster.root}/setup.log"\n'
        "export GLOO_SOCKET_IFNAME=slurm0 OMP_NUM_THREADS=1\n"
    )
    return hook


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[torch.Tensor]:
    """The worker's weights from one plain process (no SLURM, world 1)."""
    out = tmp_path_factory.mktemp("reference")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_"))}
    cmd = [sys.executable, "-m", "tests.workers.slurm_fit", "--out", str(out), "--steps", str(STEPS)]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out / "weights.pt", weights_only=True)


def launch(cluster: Cluster, site: Path, name: str, nodes: int, tasks: int, sleep: float = 0.0) -> tuple[str, Path]:
    """Submit the launcher's script (quant_pretraining's smoke config, CPU) running the worker; (job id, out)."""
    out = cluster.root / name
    job = SlurmJob(
        "quant_pretraining", "smoke", gpus=tasks, nodes=nodes, cpus=1, mem="1000M", time="10:00",
        accelerator="cpu", setup_hook=str(site), log_dir=str(cluster.root / "joblogs"),
        entry="tests.workers.slurm_fit", extra=f"--out {out} --steps {STEPS} --sleep {sleep}",
    )  # fmt: skip
    (job_id,) = submit(render_job(job), REPO_ROOT, sbatch=shutil.which("sbatch") or "sbatch")
    return job_id, cluster.root / "joblogs" / f"quant_pretraining-smoke-{job_id}.out"


def assert_same_weights(out: Path, reference: list[torch.Tensor]) -> None:
    for a, b in zip(torch.load(out / "weights.pt", weights_only=True), reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def summaries(out: Path) -> dict[str, dict]:
    """quant_pretraining's finished runs under `out`, by configuration (its train cache)."""
    files = (out / "quant_pretraining" / "smoke" / "train-cache").glob("*.json")
    return {(d := json.loads(f.read_text()))["configuration"]: d for f in files}


def test_paper_smoke_as_two_tasks_equals_one_process(cluster, site):
    """quant_pretraining's smoke scale (every stage: data on rank 0, training with DDP over gloo, the report
    on rank 0) as 2 SLURM tasks; the same losses, step by step, and validation losses as one process (the
    paper deletes its checkpoints, so the weights are compared through what they compute)."""
    one = cluster.root / "paper-one-process"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_"))}
    cmd = [sys.executable, "-m", "papers.quant_pretraining.reproduce", "--scale", "smoke", "--out", str(one)]
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    TIMINGS["paper smoke, one process s"] = round(time.perf_counter() - tic, 2)
    out = cluster.root / "paper-two-tasks"
    job = SlurmJob(
        "quant_pretraining", "smoke", gpus=2, nodes=1, cpus=1, mem="1000M", time="10:00", accelerator="cpu",
        setup_hook=str(site), log_dir=str(cluster.root / "joblogs"), extra=f"--out {out}",
    )  # fmt: skip
    tic = time.perf_counter()
    (job_id,) = submit(render_job(job), REPO_ROOT, sbatch=shutil.which("sbatch") or "sbatch")
    log = cluster.root / "joblogs" / f"quant_pretraining-smoke-{job_id}.out"
    cluster.wait_state(job_id, {"COMPLETED"}, 240, log)
    TIMINGS["paper smoke, 2-task job s"] = round(time.perf_counter() - tic, 2)
    text = log.read_text()
    assert "[rank 1/2]" in text and "[rank 0/2]" in text  # two ranks, tagged
    reference, got = summaries(one), summaries(out)
    assert sorted(got) == sorted(reference) == ["baseline", "v8_per_channel", "w8a8g8_per_token"]
    for name, ref in reference.items():
        torch.testing.assert_close(got[name]["curve"]["loss"], ref["curve"]["loss"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got[name]["final"]["val_loss"], ref["final"]["val_loss"], rtol=1e-5, atol=1e-6)
    results = list((out / "quant_pretraining" / "smoke").glob("*/results.json"))
    assert len(results) == 1  # one report (rank 0's)


def test_requeue_drill_resumes_to_the_same_weights(cluster, site, reference):
    tic = time.perf_counter()
    job_id, log = launch(cluster, site, "drill", nodes=1, tasks=2, sleep=0.15)
    out, step_file = cluster.root / "drill", cluster.root / "drill" / "step"

    def at_step(n: int) -> bool:
        return step_file.exists() and step_file.read_text().strip().isdigit() and int(step_file.read_text()) >= n

    cluster._wait(lambda: at_step(10), 180, f"job {job_id} at step 10")
    TIMINGS["drill: submit to step 10 s"] = round(time.perf_counter() - tic, 2)
    tic = time.perf_counter()
    cluster.sh("scancel", "--signal=USR1", job_id)  # what --signal=USR1@120 sends before the end
    info = cluster.wait_state(job_id, {"PENDING"}, 60, log)
    TIMINGS["drill: USR1 to requeued s"] = round(time.perf_counter() - tic, 2)
    assert info["Restarts"] == "1"
    graceful = int(re.search(r"preempted; checkpointed at step (\d+)", log.read_text()).group(1))
    step_file.unlink(missing_ok=True)
    tic = time.perf_counter()
    cluster._wait(lambda: at_step(graceful + 8), 180, f"job {job_id} running again past step {graceful + 8}")
    TIMINGS["drill: requeued to step +8 s"] = round(time.perf_counter() - tic, 2)
    cluster.sh("scontrol", "requeue", job_id)  # a node failure: killed without a checkpoint of its own
    info = cluster.wait_state(job_id, {"PENDING"}, 60, log)
    assert info["Restarts"] == "2"
    tic = time.perf_counter()
    cluster.wait_state(job_id, {"COMPLETED"}, 180, log)
    TIMINGS["drill: hard requeue to done s"] = round(time.perf_counter() - tic, 2)
    text = log.read_text()
    resumed = [int(s) for s in re.findall(r"resumed from \S+ at step (\d+)", text)]
    # two ranks log each resume: first from the USR1 checkpoint, then from a periodic one (every 5 steps)
    assert resumed[:2] == [graceful, graceful] and len(resumed) == 4, text[-3000:]
    assert resumed[2] == resumed[3] and (resumed[2] % 5 == 0 or resumed[2] == graceful)
    assert "launch: checkpointed for preemption; requeueing" in text and " start 2 on " in text
    result = json.loads((out / "result.json").read_text())
    assert (result["world"], result["resumed"], result["restarts"]) == (2, True, 2)
    assert_same_weights(out, reference)
    setups = (cluster.root / "setup.log").read_text().splitlines()
    assert setups == ["ran"]  # prepared once, not at every start: the stamp
    print(f"\ndrill: USR1 checkpoint at step {graceful}; hard requeue resumed at step {resumed[2]}")
    print("\n".join(line for line in text.splitlines() if line.startswith("launch:") or "resumed" in line
                    or "preempted" in line))  # fmt: skip


def test_two_nodes_in_two_namespaces_talk_gloo(cluster, site, reference):
    tic = time.perf_counter()
    job_id, log = launch(cluster, site, "two-nodes", nodes=2, tasks=1)
    cluster.wait_state(job_id, {"COMPLETED"}, 180, log)
    TIMINGS["2-node job s"] = round(time.perf_counter() - tic, 2)
    result = json.loads((cluster.root / "two-nodes" / "result.json").read_text())
    node1, node2 = cluster.node_addr["node1"], cluster.node_addr["node2"]
    assert result["ranks"] == [{"node": 0, "address": node1}, {"node": 1, "address": node2}]
    assert result["master"] == [node1, str(20000 + int(job_id) % 20000)]  # from the allocation
    assert_same_weights(cluster.root / "two-nodes", reference)
