"""The server under test: Apache httpd (event MPM) -> php-fpm (OPcache) -> MariaDB, all on loopback.

Every file it needs (configuration, certificate, database, logs) lives in one work folder, and every
process runs in its own process group, so `Stack.stop()` leaves nothing behind. Ports are free ports
chosen at start; nothing listens beyond 127.0.0.1 and MariaDB listens on a unix socket only.
"""

from __future__ import annotations

import logging
import random
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.traces import procs
from shared.traces.behaviours import BEHAVIOURS, Behaviour
from shared.traces.errors import TraceError
from shared.traces.options import check

log = logging.getLogger(__name__)

APACHE = "/usr/sbin/apache2"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
PHP_FPM = "/usr/sbin/php-fpm8.2"
MARIADBD = "/usr/sbin/mariadbd"
MARIADB_INSTALL = "/usr/bin/mariadb-install-db"
PACKAGES = "apache2 php8.2-fpm php-mysql mariadb-server wrk stress-ng"
N_ACTORS = 200

FIRST = (
    "PENELOPE NICK ED JENNIFER JOHNNY BETTE GRACE MATTHEW JOE CHRISTIAN ZERO KARL UMA VIVIEN CUBA "
    "FRED HELEN DAN BOB LUCILLE KIRSTEN ELVIS SANDRA CAMERON KEVIN RIP JULIA WOODY ALEC SISSY"
).split()
LAST = (
    "GUINESS WAHLBERG CHASE DAVIS LOLLOBRIGIDA NICHOLSON MOSTEL JOHANSSON SWANK GABLE CAGE BERRY WOOD BERGEN OLIVIER "
    "COSTNER VOIGHT TORN FAWCETT TRACY PALTROW MARX KILMER STREEP BLOOM CRAWFORD MCQUEEN HOFFMAN WRAY JOHANSSON"
).split()

INDEX_PHP = """<?php
// The paper's page: a random actor id, one prepared SELECT through PDO, the names echoed.
$id = random_int(1, {n_actors});
$db = new PDO('mysql:unix_socket={socket};dbname=sakila', 'web', 'web');
$st = $db->prepare('SELECT first_name, last_name FROM actor WHERE actor_id = ?');
$st->execute([$id]);
$row = $st->fetch(PDO::FETCH_ASSOC);
echo $row['first_name'], ' ', $row['last_name'], "\\n";
"""

CONTENTION_PHP = """<?php
// A file cache behind a lock (request_analysis's injected contention): most requests read the cache
// under a shared flock; 1 in {every} rebuilds it from {files} source files under an exclusive flock, and
// everyone arriving meanwhile waits.
$lock = fopen('{dir}/cache.lock', 'c');
if (mt_rand(1, {every}) === 1) {
    flock($lock, LOCK_EX);
    $index = [];
    foreach (glob('{dir}/lib/*.php') as $file) {
        $stat = stat($file);
        $index[basename($file)] = [$stat['mtime'], md5(file_get_contents($file))];
    }
    file_put_contents('{dir}/cache.json', json_encode($index));
    flock($lock, LOCK_UN);
} else {
    flock($lock, LOCK_SH);
    $index = @file_get_contents('{dir}/cache.json');
    flock($lock, LOCK_UN);
}
fclose($lock);
"""
CACHE_FILES, CACHE_EVERY = 400, 40

MARKER_PHP = """<?php
// Request boundaries through trace_marker, for binaries whose request functions cannot be uprobed.
@file_put_contents('{marker}', "req_begin");
register_shutdown_function(function () { @file_put_contents('{marker}', "req_end"); });
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_installed() -> None:
    missing = [p for p in (APACHE, PHP_FPM, MARIADBD, MARIADB_INSTALL, "/usr/bin/wrk") if not Path(p).exists()]
    if missing:
        raise TraceError(
            f"missing {', '.join(missing)}; install with `make setup` as root or apt-get install {PACKAGES}"
        )


@dataclass
class Ports:
    http: int = field(default_factory=free_port)
    https: int = field(default_factory=free_port)
    fcgi: int = field(default_factory=free_port)


class Stack:
    """Apache + php-fpm + MariaDB in `work`, reconfigured per behaviour by restarting what changes."""

    def __init__(self, work: Path, seed: int = 0):
        check("seed", seed)
        self.work = work
        self.seed = seed
        self.ports = Ports()
        self.procs: dict[str, subprocess.Popen] = {}
        self.current: dict[str, Behaviour] = {}
        self.marker: Path | None = None  # trace_marker file, when request boundaries come from PHP writes

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}/index.php"

    @property
    def https_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.https}/index.php"

    def url_for(self, b: Behaviour) -> str:
        return self.https_url if b.https else self.url

    # -- preparation ---------------------------------------------------------------------------
    def prepare(self) -> None:
        check_installed()
        for sub in ("www", "logs", "run", "db"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        self.work.chmod(0o755)
        (self.work / "www").chmod(0o755)
        (self.work / "www/index.php").write_text(
            INDEX_PHP.replace("{n_actors}", str(N_ACTORS)).replace("{socket}", str(self.socket))
        )
        (self.work / "www/index.php").chmod(0o644)
        self._certificate()
        self._database()

    @property
    def socket(self) -> Path:
        return self.work / "run/mysqld.sock"

    def _certificate(self) -> None:
        # The paper's vhost used a self-signed RSA-4096 certificate.
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:4096", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
             "-keyout", str(self.work / "server.key"), "-out", str(self.work / "server.crt")],
            check=True, capture_output=True,
        )  # fmt: skip

    def _database(self) -> None:
        rng = random.Random(self.seed)
        rows = ",".join(f"({i},'{rng.choice(FIRST)}','{rng.choice(LAST)}')" for i in range(1, N_ACTORS + 1))
        (self.work / "init.sql").write_text(
            "CREATE DATABASE IF NOT EXISTS sakila;\n"
            "CREATE TABLE IF NOT EXISTS sakila.actor (actor_id SMALLINT UNSIGNED PRIMARY KEY, "
            "first_name VARCHAR(45) NOT NULL, last_name VARCHAR(45) NOT NULL, "
            "last_update TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, KEY idx_actor_last_name (last_name));\n"
            f"REPLACE INTO sakila.actor (actor_id, first_name, last_name) VALUES {rows};\n"
            "CREATE USER IF NOT EXISTS 'web'@'localhost' IDENTIFIED BY 'web';\n"
            "GRANT SELECT ON sakila.* TO 'web'@'localhost';\n"
        )
        proc = subprocess.run(
            [MARIADB_INSTALL, "--no-defaults", f"--datadir={self.work / 'db'}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode:
            raise TraceError(f"mariadb-install-db failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    # -- configuration -------------------------------------------------------------------------
    def apache_conf(self, b: Behaviour) -> str:
        w, mods = self.work, APACHE_MODULES
        modules = ["mpm_event", "authz_core", "dir", "proxy", "proxy_fcgi"]
        if b.ssl:
            modules += ["socache_shmcb", "ssl"]
        if b.dumpio:
            modules.append("dumpio")
        servers = 1 if b.max_request_workers <= 25 else 3
        lines = [
            f"ServerRoot {w}",
            "ServerName 127.0.0.1",
            f"PidFile {w}/run/apache2.pid",
            f"DefaultRuntimeDir {w}/run",
            f"Mutex file:{w}/run default",
            "User www-data",
            "Group www-data",
            *(f"LoadModule {m}_module {mods}/mod_{m}.so" for m in modules),
            f"Listen 127.0.0.1:{self.ports.http}",
            f"ErrorLog {w}/logs/apache-error.log",
            'LogFormat "%h %l %u %t \\"%r\\" %>s %b %D" common',  # %D: µs serving the request (queueing excluded)
            f"CustomLog {w}/logs/apache-access.log common",
            "LogLevel warn" + (" dumpio:trace7" if b.dumpio else ""),
            f"KeepAlive {'On' if b.keepalive else 'Off'}",
            f"StartServers {servers}",
            f"ServerLimit {max(1, b.max_request_workers // 25)}",
            "ThreadsPerChild 25",
            f"MaxRequestWorkers {b.max_request_workers}",
            f"MinSpareThreads {min(75, b.max_request_workers)}",
            f"MaxSpareThreads {min(250, b.max_request_workers + 25)}",
            f"DocumentRoot {w}/www",
            f"<Directory {w}/www>\n  Require all granted\n</Directory>",
            "DirectoryIndex index.php",
            f"ProxyPassMatch ^/(.*\\.php(/.*)?)$ fcgi://127.0.0.1:{self.ports.fcgi}{w}/www/$1",
        ]
        if b.dumpio:
            lines += ["DumpIOInput On", "DumpIOOutput On"]
        if b.ssl:
            lines += [
                f"Listen 127.0.0.1:{self.ports.https}",
                f"SSLSessionCache shmcb:{w}/run/ssl_scache(512000)",
                f"<VirtualHost 127.0.0.1:{self.ports.https}>\n  SSLEngine on\n"
                f"  SSLCertificateFile {w}/server.crt\n  SSLCertificateKeyFile {w}/server.key\n</VirtualHost>",
            ]
        return "\n".join(lines) + "\n"

    def php_ini(self, b: Behaviour) -> str:
        ext_dir = sorted(Path("/usr/lib/php").glob("20*/pdo_mysql.so"))
        if not ext_dir:
            raise TraceError("php extension pdo_mysql.so not found under /usr/lib/php; apt-get install php-mysql")
        lines = [
            f"extension_dir = {ext_dir[-1].parent}",
            "extension = mysqlnd",
            "extension = pdo",
            "extension = pdo_mysql",
        ]
        prepends = []
        if b.cache_contention:
            cache = self.work / "cache"
            (cache / "lib").mkdir(parents=True, exist_ok=True)
            for i in range(CACHE_FILES):
                (cache / "lib" / f"m{i:03d}.php").write_text(f"<?php // module {i}\n" + "$x = 1;\n" * 200)
            shutil.chown(cache, self.php_user, self.php_user)
            page = self.work / "www/contention.php"
            text = CONTENTION_PHP.replace("{dir}", str(cache)).replace("{every}", str(CACHE_EVERY))
            page.write_text(text.replace("{files}", str(CACHE_FILES)))
            page.chmod(0o644)
            prepends.append(page)
        if self.marker is not None:
            prepend = self.work / "www/marker.php"
            prepend.write_text(MARKER_PHP.replace("{marker}", str(self.marker)))
            prepend.chmod(0o644)
            prepends.insert(0, prepend)
        if len(prepends) == 2:  # one auto_prepend_file: the marker page includes the contention page
            marker_page = prepends[0]
            marker_page.write_text(marker_page.read_text() + f"include '{prepends[1]}';\n")
        if prepends:
            lines.append(f"auto_prepend_file = {prepends[0]}")
        if b.opcache:  # the paper's OPcache settings; the 'opcache' behaviour drops the extension
            lines += [
                "zend_extension = opcache",
                "opcache.enable = 1",
                "opcache.memory_consumption = 128",
                "opcache.interned_strings_buffer = 8",
                "opcache.max_accelerated_files = 10000",
                "opcache.validate_timestamps = 0",
                "opcache.enable_file_override = 1",
            ]
        return "\n".join(lines) + "\n"

    @property
    def php_user(self) -> str:
        """www-data, except in marker mode: tracefs (mode 0700) is reachable by root only."""
        return "root" if self.marker is not None else "www-data"

    def fpm_conf(self) -> str:
        w = self.work
        return (
            f"[global]\npid = {w}/run/php-fpm.pid\nerror_log = {w}/logs/php-fpm.log\ndaemonize = no\n"
            f"[www]\nuser = {self.php_user}\ngroup = {self.php_user}\nlisten = 127.0.0.1:{self.ports.fcgi}\n"
            "pm = dynamic\npm.max_children = 10\npm.start_servers = 2\npm.min_spare_servers = 2\n"
            "pm.max_spare_servers = 4\n"
        )

    # -- processes -----------------------------------------------------------------------------
    def apply(self, b: Behaviour) -> None:
        """Bring the stack to behaviour `b`, restarting only the servers whose configuration differs."""
        if "mariadb" not in self.procs:
            self._start_mariadb()
        if self._differs("php", b, ("opcache", "cache_contention")):
            self._restart("php", self._start_php, b)
        if self._differs("apache", b, ("max_request_workers", "keepalive", "ssl", "dumpio")):
            self._restart("apache", self._start_apache, b)
        self.wait_ready()

    def _differs(self, server: str, b: Behaviour, keys: tuple[str, ...]) -> bool:
        cur = self.current.get(server)
        return cur is None or any(getattr(cur, k) != getattr(b, k) for k in keys)

    def _restart(self, server: str, start, b: Behaviour) -> None:
        if server in self.procs:
            procs.stop(self.procs.pop(server))
        start(b)
        self.current[server] = b

    def _start_mariadb(self) -> None:
        w = self.work
        self.procs["mariadb"] = procs.spawn(
            [MARIADBD, "--no-defaults", f"--datadir={w}/db", f"--socket={self.socket}", "--skip-networking",
             "--user=root", f"--pid-file={w}/run/mariadb.pid", f"--log-error={w}/logs/mariadb.log",
             f"--init-file={w}/init.sql", "--innodb-buffer-pool-size=64M"],
            w / "logs/mariadb.out", own_session=False,
        )  # fmt: skip
        self._wait(lambda: self.socket.exists(), "mariadbd socket", self.procs["mariadb"], w / "logs/mariadb.log")

    def _start_php(self, b: Behaviour) -> None:
        (self.work / "php.ini").write_text(self.php_ini(b))
        (self.work / "php-fpm.conf").write_text(self.fpm_conf())
        env = {"PATH": "/usr/sbin:/usr/bin:/bin", "PHP_INI_SCAN_DIR": ""}
        self.procs["php"] = procs.spawn(
            [PHP_FPM, "-c", str(self.work / "php.ini"), "-y", str(self.work / "php-fpm.conf"), "-F"]
            + (["-R"] if self.php_user == "root" else []),
            self.work / "logs/php-fpm.out", env=env, own_session=False,
        )  # fmt: skip
        self._wait(
            lambda: _port_open(self.ports.fcgi), "php-fpm port", self.procs["php"], self.work / "logs/php-fpm.out"
        )

    def _start_apache(self, b: Behaviour) -> None:
        conf = self.work / "httpd.conf"
        conf.write_text(self.apache_conf(b))
        env = {"PATH": "/usr/sbin:/usr/bin:/bin", "LANG": "C"}
        self.procs["apache"] = procs.spawn(
            [APACHE, "-f", str(conf), "-DFOREGROUND"], self.work / "logs/apache.out", env=env, own_session=False
        )
        self._wait(
            lambda: _port_open(self.ports.http),
            "apache port",
            self.procs["apache"],
            self.work / "logs/apache-error.log",
        )

    def _wait(self, ready, what: str, proc: subprocess.Popen, logfile: Path, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
        why = f"exited with code {proc.returncode}" if proc.poll() is not None else f"not ready after {timeout:.0f} s"
        raise TraceError(f"{what}: {why}; {logfile}:\n{tail}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the page answers 200 with an actor's name (all three servers work)."""
        deadline, last = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    body = resp.read().decode()
                if resp.status == 200 and body.split()[0] in FIRST:
                    return
                last = f"HTTP {resp.status}: {body[:200]}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TraceError(f"{self.url} did not serve an actor within {timeout:.0f} s: {last}")

    def pgids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def tasks(self) -> dict[int, tuple[int, str]]:
        return procs.tasks_of(self.pgids())

    def stop(self) -> None:
        for name in ("apache", "php", "mariadb"):
            if name in self.procs:
                procs.stop(self.procs.pop(name))
        self.current.clear()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


__all__ = ["BEHAVIOURS", "Stack", "free_port"]
