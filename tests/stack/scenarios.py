"""The Compose stacks, for real: run by scripts/test-stack against a Docker
engine, with the project's own docker-compose.yml and
deploy/cluster/docker-compose.yml as users run them.

Events are signed and posted from the host by the bridge's own `send`
(SEND_BIN), each sender retrying an event with the same id until it is
answered 2xx; what is stored is read back from NATS (the main stack
publishes NATS on 127.0.0.1:4222; in the cluster, with the bridge image's
`subscribe` and the nodes' monitoring, inside the stack's network).

Usage: scenarios.py main|cluster PROJECT FIGURES_FILE
Every wait polls a condition until a generous deadline; nothing asserts a
duration. Figures (timings, RSS) are written to FIGURES_FILE for BENCHMARKS.md.
"""

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import nats

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEND_BIN = os.environ["SEND_BIN"]
DEV_SECRET = "REVWRUxPUE1FTlQgT05MWSAtIG5vdCBhIEZhc3RQaXggc2VjcmV0"
DEV_TOKEN = "development-inspector-token"
STREAM = "FASTPIX"
DEADLINE = 300


def log(text):
    print(f"--- {text}", flush=True)


def run(*args, check=True, capture=True, timeout=900):
    result = subprocess.run(
        list(args), cwd=REPO, capture_output=capture, text=True, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def wait_for(what, condition, deadline=DEADLINE, pause=0.5):
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(pause)


class Figures:
    def __init__(self, path):
        self.path = path

    def add(self, key, value):
        with open(self.path, "a") as f:
            f.write(f"{key}={value}\n")
        log(f"figure {key} = {value}")


class Compose:
    def __init__(self, project, file):
        self.project = project
        self.file = file

    def __call__(self, *args, **kw):
        return run("docker", "compose", "-p", self.project, "-f", self.file, *args, **kw)

    def containers(self, service):
        out = self("ps", "-a", "-q", service).stdout.split()
        return out

    def container(self, service):
        ids = self.containers(service)
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def logs(self, service):
        return self("logs", "--no-color", "--no-log-prefix", service).stdout.splitlines()


def inspect(container, fmt):
    return run("docker", "inspect", "-f", fmt, container).stdout.strip()


def rss_kib(container):
    pid = inspect(container, "{{.State.Pid}}")
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {container}")


def send(url, secret, event_type, event_id=None):
    """One post with the bridge's `send`: (exit code, HTTP status or None, output)."""
    args = [SEND_BIN, "send", "--url", url, "--secret", secret, event_type]
    if event_id:
        args += ["--id", event_id]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTPIX_BRIDGE")}
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    match = re.match(r"(\d{3}) ", result.stdout)
    return result.returncode, int(match.group(1)) if match else None, result.stdout + result.stderr


class Sender(threading.Thread):
    """Posts `count` events of `types` in turn, each retried with its id until 2xx."""

    def __init__(self, urls, secret, types, count=None, stop=None):
        super().__init__(daemon=True)
        self.urls, self.secret, self.types = urls, secret, types
        self.count, self.stop = count, stop or threading.Event()
        self.stored = []  # ids answered 2xx
        self.refused = {}  # status (None: no answer) -> count
        self.error = None

    def run(self):
        try:
            i = 0
            while (self.count is None or i < self.count) and not self.stop.is_set():
                event_type = self.types[i % len(self.types)]
                event_id = str(uuid.uuid4())
                end = time.monotonic() + DEADLINE
                tries = 0
                while True:
                    code, status, out = send(self.urls[tries % len(self.urls)], self.secret, event_type, event_id)
                    tries += 1
                    if code == 0:
                        self.stored.append(event_id)
                        break
                    self.refused[status] = self.refused.get(status, 0) + 1
                    if time.monotonic() > end:
                        raise AssertionError(f"{event_id} never stored: {out}")
                    time.sleep(0.2)
                i += 1
        except Exception as e:  # reported by the thread that joins
            self.error = e


def join_all(senders):
    for s in senders:
        s.join()
        if s.error:
            raise s.error
    stored = [i for s in senders for i in s.stored]
    refused = {}
    for s in senders:
        for k, v in s.refused.items():
            refused[k] = refused.get(k, 0) + v
    return stored, refused


def exactly_once(stored_ids, answered):
    """Every id answered 2xx is stored once; nothing stored twice."""
    counts = {}
    for i in stored_ids:
        counts[i] = counts.get(i, 0) + 1
    twice = {i: n for i, n in counts.items() if n > 1}
    assert not twice, f"stored more than once: {twice}"
    missing = [i for i in answered if i not in counts]
    assert not missing, f"answered 2xx but not stored: {missing[:10]} ({len(missing)})"


def subject_matches(pattern, subject):
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


# ---------------------------------------------------------------- main stack

async def stream_ids(nc_url="nats://127.0.0.1:4222"):
    """(event id -> stored count, event id -> subject) over the whole stream."""
    nc = await nats.connect(nc_url, max_reconnect_attempts=10)
    try:
        js = nc.jetstream()
        info = await js.stream_info(STREAM)
        total = info.state.messages
        counts, subjects = {}, {}
        if total:
            sub = await js.subscribe(info.config.subjects[0], stream=STREAM, ordered_consumer=True)
            for _ in range(total):
                msg = await sub.next_msg(timeout=30)
                event_id = (msg.headers or {}).get("FastPix-Event-Id") or json.loads(msg.data)["id"]
                counts[event_id] = counts.get(event_id, 0) + 1
                subjects[event_id] = msg.subject
            await sub.unsubscribe()
        return counts, subjects
    finally:
        await nc.close()


async def consumer_state(durable):
    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        info = await nc.jetstream().consumer_info(STREAM, durable)
        filters = list(info.config.filter_subjects or []) or ([info.config.filter_subject] if info.config.filter_subject else [])
        return filters, info.ack_floor.stream_seq, info.num_redelivered
    finally:
        await nc.close()


def stored_in_stream():
    return asyncio.run(stream_ids())


CONSUMERS = ["event-log", "event-archive", "live-stream-worker", "media-catalog", "media-consumer-py",
             "forward-receiver"]
# The service whose log shows a consumer's events, when its durable consumer
# has another name: forward-receiver gets what `forward` delivers through
# `forward-example`.
DURABLES = {"forward-receiver": "forward-example"}


def durable(service):
    return DURABLES.get(service, service)


def all_types():
    """Every type `send --all` knows, from its own listing of what it sent."""
    code, _, out = send("http://127.0.0.1:8080/webhooks/fastpix", DEV_SECRET, "--all")
    assert code == 0, f"send --all: {out}"
    sent = re.findall(r"^2\d\d \S+\s+(\S+)\s+id=(\S+)\s+(\{.*\})$", out, re.M)
    assert sent, f"send --all printed no event: {out}"
    return [(t, i, json.loads(answer)["subject"]) for t, i, answer in sent]


def check_fan_out(compose, sent, where=""):
    """Each consumer's log shows exactly the sent events its filters select, each once."""
    # A consumer without filter subjects reads the whole stream.
    filters = {d: asyncio.run(consumer_state(durable(d)))[0] or [">"] for d in CONSUMERS}
    expected = {
        d: {i for _, i, subject in sent if any(subject_matches(f, subject) for f in fs)}
        for d, fs in filters.items()
    }
    for d in ("event-log", "event-archive", "forward-receiver"):
        assert len(expected[d]) == len(sent), f"{d} reads every event: {filters[d]}"
    for d in ("live-stream-worker", "media-catalog", "media-consumer-py"):
        assert 0 < len(expected[d]) < len(sent), f"{d} reads one family: {filters[d]}"

    def lines_with(service, event_id):
        return sum(1 for line in compose.logs(service) if event_id in line)

    for d in CONSUMERS:
        wait_for(
            f"{d} to show its events{where}",
            lambda d=d: all(lines_with(d, i) >= 1 for i in expected[d]),
        )
    for d in CONSUMERS:
        logs = compose.logs(d)
        for _, i, subject in sent:
            n = sum(1 for line in logs if i in line)
            want = 1 if i in expected[d] else 0
            assert n == want, f"{d}: event {i} ({subject}) in {n} lines, expected {want}{where}"
    log(f"fan-out{where}: {len(sent)} events, each consumer exactly its families once")


def main_stack(project, figures):
    compose = Compose(project, "docker-compose.yml")
    url = "http://127.0.0.1:8080/webhooks/fastpix"

    log("docker compose up --build -d --wait (the image built above is reused)")
    t0 = time.monotonic()
    compose("up", "--build", "-d", "--wait", "--wait-timeout", "600")
    figures.add("main_up_healthy_s", round(time.monotonic() - t0, 1))
    images = {inspect(c, "{{.Image}}") for s in ["bridge", "inspector", "forward", *CONSUMERS[:4]] for c in compose.containers(s)}
    assert len(images) == 1, f"the project's services run one image: {images}"

    # Users, and nothing written outside the volumes.
    for service, user in [("nats", ""), ("bridge", "65532:65532"), ("inspector", "65532:65532"),
                          ("event-log", "65532:65532"), ("media-consumer-py", "65532:65532")]:
        got = inspect(compose.container(service), "{{.Config.User}}")
        assert got == user, f"{service} runs as {got!r}, the files say {user!r}"

    sent = all_types()
    log(f"sent one event of each of {len(sent)} types from the host")
    check_fan_out(compose, sent)

    # The inspector lists them.
    def inspector_lists():
        req = urllib.request.Request(
            "http://127.0.0.1:8090/api/events?limit=500", headers={"Authorization": f"Bearer {DEV_TOKEN}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                listed = {e["id"] for e in json.load(r)["events"]}
        except OSError:
            return False
        return all(i in listed for _, i, _ in sent)

    wait_for("the inspector to list every event sent", inspector_lists)
    log("inspector on 127.0.0.1:8090 lists them")
    figures.add("bridge_rss_idle_kib", rss_kib(compose.container("bridge")))

    # NATS restarted under a retrying sender.
    stop = threading.Event()
    senders = [Sender([url], DEV_SECRET, ["video.media.ready", "video.live_stream.active"], stop=stop) for _ in range(3)]
    for s in senders:
        s.start()
    wait_for("the senders to get going", lambda: sum(len(s.stored) for s in senders) >= 30)
    figures.add("bridge_rss_load3_kib", rss_kib(compose.container("bridge")))
    before = sum(len(s.stored) for s in senders)
    compose("restart", "nats")
    log("nats restarted")
    wait_for("events stored after the restart", lambda: sum(len(s.stored) for s in senders) >= before + 60)
    stop.set()
    answered, refused = join_all(senders)
    assert set(refused) <= {503}, f"while NATS was away the bridge answered {refused}, not 503"
    counts, _ = stored_in_stream()
    exactly_once(
        [i for i, n in counts.items() for _ in range(n)], answered
    )
    log(f"restart nats: {len(answered)} answered 2xx, each stored once; refused {refused}")
    figures.add("restart_refused_503", refused.get(503, 0))

    # SIGTERM to the bridge with requests in flight.
    stop = threading.Event()
    senders = [Sender([url], DEV_SECRET, ["video.media.ready"], stop=stop) for _ in range(3)]
    for s in senders:
        s.start()
    wait_for("the senders to get going", lambda: sum(len(s.stored) for s in senders) >= 30)
    bridge = compose.container("bridge")
    t0 = time.monotonic()
    compose("stop", "bridge")
    stopped_in = time.monotonic() - t0
    code = inspect(bridge, "{{.State.ExitCode}}")
    assert code == "0", f"the bridge exited {code} on SIGTERM"
    assert not any("still running after the grace period" in l for l in compose.logs("bridge")), \
        "in-flight requests were cut at the grace period"
    figures.add("bridge_sigterm_exit_s", round(stopped_in, 1))
    compose("start", "bridge")
    compose("up", "-d", "--wait", "--wait-timeout", "300")
    stop.set()
    answered, refused = join_all(senders)
    counts, subjects = stored_in_stream()
    exactly_once([i for i, n in counts.items() for _ in range(n)], answered)
    log(f"stop bridge: exit 0 after {stopped_in:.1f}s; {len(answered)} answered 2xx, each stored once")

    # Every consumer caught up, then down and up: nothing delivered twice.
    total = len(counts)
    for d in CONSUMERS:
        wait_for(f"{d} to ack everything it reads", lambda d=d: consumer_pending(durable(d)) == 0)
    seen_before = set(counts)
    compose("down")
    compose("up", "-d", "--wait", "--wait-timeout", "300")
    after, _ = stored_in_stream()
    assert set(after) == seen_before and len(after) == total, "the stream did not survive down/up"
    sent2 = all_types()
    check_fan_out(compose, sent2, " after down/up")
    for d in CONSUMERS:
        logs = compose.logs(d)
        again = [i for i in seen_before if any(i in line for line in logs)]
        assert not again, f"{d} got acknowledged events again after down/up: {again[:5]}"
    log(f"down/up: {total} stored events kept, consumers resumed where they acked")

    # Two copies of media-catalog share the events.
    compose("up", "-d", "--wait", "--wait-timeout", "300", "--scale", "media-catalog=2", "--no-recreate")
    copies = compose.containers("media-catalog")
    assert len(copies) == 2, copies
    shared = []

    def both_handled():
        code, _, out = send(url, DEV_SECRET, "video.media.ready")
        assert code == 0, out
        shared.append(re.search(r"id=(\S+)", out).group(1))
        per_copy = [run("docker", "logs", c).stdout + run("docker", "logs", c).stderr for c in copies]
        return all(any(i in text for i in shared) for text in per_copy) and len(shared) >= 10

    wait_for("both media-catalog copies to handle events", both_handled, pause=0.2)
    for i in shared:
        def handled_by():
            return sum(
                sum(1 for line in (run("docker", "logs", c).stdout + run("docker", "logs", c).stderr).splitlines() if i in line)
                for c in copies
            )
        wait_for(f"{i} handled", lambda: handled_by() >= 1)
        assert handled_by() == 1, f"{i} handled {handled_by()} times by the two copies"
    log(f"--scale media-catalog=2: {len(shared)} events shared, each handled once")

    # Nothing written outside the volumes (`docker diff` shows the container's own layer).
    for service in ["nats", "bridge", "inspector", "forward", *CONSUMERS]:
        for c in compose.containers(service):
            # The engine adds each mount point (and its parents) to the
            # container's layer; anything else was written by the process.
            mounts = [m["Destination"] for m in json.loads(inspect(c, "{{json .Mounts}}"))]
            written = [
                line for line in run("docker", "diff", c).stdout.splitlines()
                if not any(m == line[2:] or m.startswith(line[2:].rstrip("/") + "/") for m in mounts)
            ]
            assert not written, f"{service} wrote outside its volumes:\n" + "\n".join(written)
    log("no container wrote outside its volumes")


async def consumer_pending_async(durable):
    nc = await nats.connect("nats://127.0.0.1:4222")
    try:
        info = await nc.jetstream().consumer_info(STREAM, durable)
        return info.num_pending + info.num_ack_pending
    finally:
        await nc.close()


def consumer_pending(durable):
    return asyncio.run(consumer_pending_async(durable))


# ------------------------------------------------------------- cluster stack

def jsz(compose, node):
    """The stream as `node` sees it (its monitoring port, inside the stack)."""
    out = compose(
        "exec", "-T", node, "wget", "-q", "-O", "-",
        "http://127.0.0.1:8222/jsz?streams=true&config=true", check=False, timeout=30,
    )
    if out.returncode != 0:
        return None
    for account in json.loads(out.stdout).get("account_details", []):
        for stream in account.get("stream_detail", []):
            if stream["name"] == STREAM:
                return stream
    return None


def cluster_stack(project, figures, secret):
    compose = Compose(project, "deploy/cluster/docker-compose.yml")
    urls = ["http://127.0.0.1:8081/webhooks/fastpix", "http://127.0.0.1:8082/webhooks/fastpix"]
    nodes = ["nats-1", "nats-2", "nats-3"]

    log("cluster: docker compose up --build -d --wait")
    t0 = time.monotonic()
    compose("up", "--build", "-d", "--wait", "--wait-timeout", "600")
    figures.add("cluster_up_healthy_s", round(time.monotonic() - t0, 1))
    stream = wait_for("the R3 stream", lambda: jsz(compose, "nats-1"))
    assert stream["config"]["num_replicas"] == 3, stream["config"]

    network = inspect(compose.container("nats-1"), "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}").split()
    assert len(network) == 1, network
    network = network[0]

    # The node bridge-1 is connected to: the one whose connz lists bridge-1's address.
    bridge_ip = inspect(compose.container("bridge-1"), "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")

    def bridges_node():
        for node in nodes:
            out = compose("exec", "-T", node, "wget", "-q", "-O", "-", "http://127.0.0.1:8222/connz", check=False)
            if out.returncode == 0 and any(c.get("ip") == bridge_ip for c in json.loads(out.stdout).get("connections", [])):
                return node
        return None

    cut = wait_for("bridge-1's NATS node", bridges_node)

    stop = threading.Event()
    types = ["video.media.ready", "video.live_stream.active", "video.upload.media_created"]
    senders = [Sender(urls, secret, types, stop=stop) for _ in range(3)]
    for s in senders:
        s.start()
    progress = lambda: sum(len(s.stored) for s in senders)
    wait_for("load", lambda: progress() >= 60)
    figures.add("cluster_bridge_rss_load3_kib", rss_kib(compose.container("bridge-1")))
    cut_container = compose.container(cut)
    run("docker", "network", "disconnect", network, cut_container)
    log(f"partition: {cut} (bridge-1's node) disconnected from {network}")
    mark = progress()
    wait_for("events stored with the node cut off", lambda: progress() >= mark + 60)
    others = [n for n in nodes if n != cut]

    def leader():
        for node in others:
            s = jsz(compose, node)
            if s and s.get("cluster", {}).get("leader") in others:
                return s["cluster"]["leader"]
        return None

    killed = wait_for("the stream leader", leader)
    run("docker", "kill", compose.container(killed))
    log(f"killed the stream leader {killed}")
    mark = progress()
    time.sleep(3)
    run("docker", "network", "connect", "--alias", cut, network, cut_container)
    log(f"{cut} reconnected")
    run("docker", "start", compose.container(killed))
    wait_for("events stored after the faults", lambda: progress() >= mark + 60)
    stop.set()
    answered, refused = join_all(senders)

    # Every replica current, seen from every node, retrying while they settle.
    def all_current():
        seen = [jsz(compose, n) for n in nodes]
        if not all(seen):
            return None
        last = {s["state"]["last_seq"] for s in seen}
        msgs = {s["state"]["messages"] for s in seen}
        leaders = {s.get("cluster", {}).get("leader") for s in seen}
        if len(leaders) != 1 or not leaders <= set(nodes):
            return None
        # The leader's view of its followers.
        replicas = seen[nodes.index(leaders.pop())].get("cluster", {}).get("replicas", [])
        if (
            len(last) == 1
            and len(msgs) == 1
            and len(replicas) == 2
            and all(r.get("current") and not r.get("lag") for r in replicas)
        ):
            return seen
        return None

    seen = wait_for("every replica current", all_current, deadline=600, pause=1)
    total = seen[0]["state"]["messages"]

    def read_all():
        # JetStream may still answer "temporarily unavailable" while it
        # settles: tried again, never skipped.
        out = compose(
            "exec", "-T", "bridge-1", "/usr/local/bin/fastpix-nats-bridge", "subscribe", "--all", "--json",
            "--count", str(total), timeout=300, check=False,
        )
        if out.returncode != 0:
            log(f"reading the stream failed, trying again: {out.stderr.strip().splitlines()[-1:]}")
            return None
        return [json.loads(line)["id"] for line in out.stdout.splitlines() if line.startswith("{")]

    ids = wait_for("the stream read back", read_all, deadline=300, pause=2)
    assert len(ids) == total, f"read {len(ids)} of {total}"
    exactly_once(ids, answered)
    log(f"cluster: {len(answered)} answered 2xx, each stored once on 3 current replicas; refused {refused}")
    figures.add("cluster_events_2xx", len(answered))
    figures.add("cluster_refused", sum(refused.values()))


if __name__ == "__main__":
    which, project, figures_file = sys.argv[1:4]
    figures = Figures(figures_file)
    if which == "main":
        main_stack(project, figures)
    else:
        cluster_stack(project, figures, os.environ["FASTPIX_BRIDGE_SIGNING_SECRETS"])
