"""A throwaway PostgreSQL server for the tests and benchmarks: Debian's server binaries,
`initdb` into a temporary folder, `pg_ctl` on a free loopback port, stopped (and the folder
removed) at the end. tools/test and tools/bench install Debian's `postgresql` when missing
(tools/_env.sh need_postgresql).

    with PostgresServer() as server:
        url = server.new_database()   # postgresql://onetill@127.0.0.1:PORT/ledger_1
        ...
        server.restart()              # chaos: the server goes away and comes back

initdb refuses to run as root: as root the server runs as the `postgres` user the package
makes, in a folder that user owns. Authentication is `trust` on 127.0.0.1 only.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

USER = "onetill"


class PostgresUnavailable(Exception):
    """No PostgreSQL server binaries here, or the server would not start; says why."""


def server_binaries():
    """The folder of the newest installed PostgreSQL's initdb and pg_ctl, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0,
    )
    return os.path.dirname(found[-1]) if found else None


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One PostgreSQL server of our own, until stop()."""

    def __init__(self, start=True):
        self.bin = server_binaries()
        if self.bin is None:
            raise PostgresUnavailable(
                "no PostgreSQL server here (/usr/lib/postgresql/*/bin/initdb): "
                "apt-get install postgresql (tools/test does)"
            )
        self.as_root = os.getuid() == 0
        self.folder = tempfile.mkdtemp(prefix="onetill-pg-")
        os.chmod(self.folder, 0o700)
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = os.path.join(self.folder, "data")
        self.log = os.path.join(self.folder, "log")
        self.port = free_port()
        self._databases = 0
        self.running = False
        try:
            self._run("initdb", "-D", self.data, "-A", "trust", "-U", USER, "-E", "UTF8")
            if start:
                self.start()
        except BaseException:
            self.stop()
            raise

    def _run(self, program, *args, timeout=60):
        command = [os.path.join(self.bin, program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode:
            raise PostgresUnavailable(
                "%s failed: %s" % (program, (result.stderr or result.stdout).strip()[-400:])
            )
        return result

    @property
    def url(self):
        """The server's own database (postgres): for making others."""
        return "postgresql://%s@127.0.0.1:%d/postgres" % (USER, self.port)

    def start(self):
        # fsync stays on (the chaos test restarts the server under load); connections
        # enough for several worker processes, each with its pool.
        options = "-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200" % (
            self.port,
            self.folder,
        )
        self._run("pg_ctl", "-D", self.data, "-o", options, "-l", self.log, "-w", "start")
        self.running = True

    def stop_server(self, mode="fast"):
        """Stop the server (the folder stays: start() again)."""
        if self.running:
            self.running = False
            self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def restart(self, down_s=0.0):
        """Stop the server (fast: every connection is cut), wait, start it again."""
        self.stop_server()
        time.sleep(down_s)
        self.start()

    def cpu_seconds(self):
        """CPU time the server's processes have used (user and system; the postmaster,
        its live children, and the children it has reaped)."""
        tick = os.sysconf("SC_CLK_TCK")
        with open(os.path.join(self.data, "postmaster.pid")) as source:
            postmaster = int(source.readline())
        total = 0
        for pid in [postmaster, *_children(postmaster)]:
            try:
                with open("/proc/%d/stat" % pid) as source:
                    fields = source.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile: its time is in the postmaster's reaped total
            total += int(fields[11]) + int(fields[12])  # utime, stime
            if pid == postmaster:
                total += int(fields[13]) + int(fields[14])  # cutime, cstime
        return total / tick

    def new_database(self, name=None, icu_locale=None):
        """A new, empty database; its URL. icu_locale ("en-US"): text ordered as people
        order it (a before T), not by code point as this server's C locale does."""
        import psycopg

        if name is None:
            self._databases += 1
            name = "ledger_%d" % self._databases
        create = 'CREATE DATABASE "%s"' % name
        if icu_locale:
            create += " TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '%s'" % icu_locale
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(create)
        return "postgresql://%s@127.0.0.1:%d/%s" % (USER, self.port, name)

    def drop_database(self, url):
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)

    def stop(self):
        """Stop the server and remove its folder."""
        try:
            self.stop_server("immediate")
        except (PostgresUnavailable, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as source:
            return [int(child) for child in source.read().split()]
    except OSError:
        return []
