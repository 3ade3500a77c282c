"""Structural checks of deploy/ that the linters do not make: the values the job's contract needs.

Run by DeployTests (Tests/DeployTests/DeployTests.swift) as `python3 check_deploy.py REPO_ROOT`. Prints
one line per problem and exits 1 if there is any, so every check is one that can fail.
"""
import re
import sys
from pathlib import Path

import yaml

SHUTDOWN_SECONDS = 10  # CONTRACT.md section 5: exit 75 within 10 seconds of SIGTERM
SECRET_WORDS = re.compile(r"KEY|PASSWORD|SECRET|TOKEN|DATABASE_URL", re.I)

root = Path(sys.argv[1])
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)


def seconds(text):
    """systemd time span ("30s", "4h", "1min 30s") in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
    total = 0.0
    for number, unit in re.findall(r"(\d+)\s*([a-z]*)", text):
        total += int(number) * units[unit or "s"]
    return total


def unit_file(path):
    """A systemd unit as {section: {key: [values]}}: keys may repeat, so configparser does not fit."""
    sections, current = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# systemd
service = unit_file(root / "deploy/systemd/postman-retry.service")["Service"]
timer = unit_file(root / "deploy/systemd/postman-retry.timer")["Timer"]
check(service.get("Type") == ["oneshot"], "service: Type=oneshot")
check(re.search(r"postman-retry run\b", " ".join(service.get("ExecStart", []))), "service: ExecStart runs `postman-retry run`")
check(service.get("KillSignal") == ["SIGTERM"], "service: KillSignal=SIGTERM")
check(seconds(service.get("TimeoutStopSec", ["0"])[-1]) > SHUTDOWN_SECONDS, "service: TimeoutStopSec above 10s")
check(seconds(service.get("TimeoutStartSec", ["0"])[-1]) >= 3600, "service: TimeoutStartSec long enough for a night's run")
check("EnvironmentFile" in service or "LoadCredential" in service, "service: secrets from a file outside the unit")
for value in service.get("Environment", []):
    check(not SECRET_WORDS.search(value.split("=")[0]), f"service: a secret set in the unit: {value.split('=')[0]}")
check(service.get("User", ["root"])[-1] not in ("root", "0"), "service: runs as a non-root user")
check(service.get("NoNewPrivileges") == ["yes"] and service.get("ProtectSystem") == ["strict"], "service: hardening")
metrics = unit_file(root / "deploy/systemd/metrics.conf")["Service"]
starts = metrics.get("ExecStart", [])
flag = re.search(r"--metrics-file (\S+)/[^/\s]+\.prom\b", starts[-1] if starts else "")
check(len(starts) == 2 and starts[0] == "", "metrics drop-in: resets ExecStart, then sets one")
check(flag and metrics.get("ReadWritePaths") == [flag.group(1)], "metrics drop-in: writes a .prom file in the one writable dir")
check(timer.get("Persistent") == ["true"], "timer: Persistent=true")
check(seconds(timer.get("RandomizedDelaySec", ["0"])[-1]) > 0, "timer: RandomizedDelaySec")
check(len(timer.get("OnCalendar", [])) == 1, "timer: one OnCalendar")

# Kubernetes: the single-process CronJob and the parallel one of `run --worker` processes.
configmap = next(d for d in yaml.safe_load_all((root / "deploy/kubernetes/configmap.yaml").read_text()) if d)
check(configmap["kind"] == "ConfigMap", "configmap.yaml: a ConfigMap")
pod_users = set()
for file in ("cronjob.yaml", "cronjob-workers.yaml"):
    cronjob = next(d for d in yaml.safe_load_all((root / "deploy/kubernetes" / file).read_text()) if d)
    where = file.removesuffix(".yaml")
    job = cronjob["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    container = pod["containers"][0]
    check(cronjob["kind"] == "CronJob", f"{where}: a CronJob")
    check(cronjob["spec"].get("concurrencyPolicy") == "Forbid", f"{where}: concurrencyPolicy Forbid")
    check(cronjob["spec"].get("timeZone"), f"{where}: a timeZone, so the schedule is local time")
    check(isinstance(job.get("activeDeadlineSeconds"), int) and job["activeDeadlineSeconds"] > 0, f"{where}: activeDeadlineSeconds")
    check(pod.get("terminationGracePeriodSeconds", 30) > SHUTDOWN_SECONDS, f"{where}: terminationGracePeriodSeconds above 10")
    check(pod.get("restartPolicy") == "Never", f"{where}: restartPolicy Never (a retry is a new pod, counted by backoffLimit)")
    args = container.get("args", [""])
    check(args[0] == "run", f"{where}: the container runs `run`")
    env = {e["name"]: e for e in container.get("env", [])}
    for name, entry in env.items():
        check(not (SECRET_WORDS.search(name) and "value" in entry), f"{where}: {name} has a literal value")
    check(env.get("DATABASE_URL", {}).get("valueFrom", {}).get("secretKeyRef"), f"{where}: DATABASE_URL from a Secret")
    check(any("secretRef" in s for s in container.get("envFrom", [])), f"{where}: API keys from a Secret (envFrom)")
    config_path = env.get("POSTMAN_RETRY_CONFIG", {}).get("value", "")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounted = [m for m in container.get("volumeMounts", []) if config_path.startswith(m["mountPath"] + "/")]
    check(mounted and volumes[mounted[0]["name"]].get("configMap", {}).get("name") == configmap["metadata"]["name"],
          f"{where}: the config file comes from the ConfigMap")
    check(Path(config_path).name in configmap.get("data", {}), f"configmap: holds the file {where}'s POSTMAN_RETRY_CONFIG names")
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    check(security.get("runAsNonRoot") is True and security.get("allowPrivilegeEscalation") is False, f"{where}: non-root")
    pod_users.add(security.get("runAsUser"))
    if file == "cronjob-workers.yaml":
        check("--worker" in args, f"{where}: the pods run `run --worker`")
        check(job.get("parallelism", 1) >= 2 and job.get("completions") == job.get("parallelism"),
              f"{where}: parallelism of 2 or more, each pod a completion (every worker exits 0 when the run completes)")
        worker_id = args[args.index("--worker-id") + 1] if "--worker-id" in args else ""
        check(worker_id == "$(POD_NAME)" and env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
              f"{where}: each worker is named after its pod (--worker-id $(POD_NAME) from the downward API)")
    else:
        check("--worker" not in args, f"{where}: a single plain `run`")
check(len(pod_users) == 1, "both CronJobs run as the same user")
security = {"runAsUser": next(iter(pod_users))}

# Dockerfile
lines = [l.strip() for l in (root / "deploy/kubernetes/Dockerfile").read_text().splitlines()]
stages = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
check(len(stages) >= 2, "Dockerfile: multi-stage")
check(re.match(r"FROM swift:\S+ AS \w+", lines[stages[0]], re.I), "Dockerfile: builds on the official Swift image")
check(re.match(r"FROM debian:\S*slim", lines[stages[-1]], re.I), "Dockerfile: runs on slim Debian")
run_stage = "\n".join(lines[stages[-1]:])
for package in ("libpq5", "ca-certificates", "tzdata"):
    check(re.search(rf"\b{package}\b", run_stage), f"Dockerfile: the run stage installs {package}")
check("libpq-dev" not in run_stage and "swift build" not in run_stage, "Dockerfile: no build tools in the run stage")
users = re.findall(r"^USER\s+(\S+)", run_stage, re.M)
check(users and users[-1].split(":")[0] not in ("root", "0"), "Dockerfile: runs as a non-root user")
check(users and users[-1].split(":")[0] == str(security.get("runAsUser")), "Dockerfile USER matches the pod's runAsUser")

for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
