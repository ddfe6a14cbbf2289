"""The paper's seven server behaviours: normal plus six perturbations (Fournier et al., setup-ood.md),
and labelled extras (`ssl_https`, `contention`) that are not the paper's.

Each behaviour says how the server and the client differ from normal; how much each changed the
requests is measured per block by the collector and recorded in the manifest."""

from __future__ import annotations

from dataclasses import dataclass

from shared.traces.errors import TraceError


@dataclass(frozen=True)
class Behaviour:
    """How one behaviour differs from the normal server. Fields left at their default mean 'as normal'."""

    name: str
    description: str
    max_request_workers: int = 400
    keepalive: bool = True
    ssl: bool = True
    dumpio: bool = False
    opcache: bool = True
    cpu_stress: bool = False
    cache_contention: bool = False
    many_connections: bool = False  # the client opens `queue_connections` connections instead of `connections`
    https: bool = False  # the client speaks HTTPS to the mod_ssl virtual host


BEHAVIOURS: dict[str, Behaviour] = {
    b.name: b
    for b in (
        Behaviour("normal", "event MPM, KeepAlive On, MaxRequestWorkers 400, mod_ssl loaded, OPcache on"),
        Behaviour(
            "connection",
            "MaxRequestWorkers 25 (ServerLimit 1, ThreadsPerChild 25) and more client connections than that, at "
            "the same total request rate",
            max_request_workers=25,
            many_connections=True,
        ),
        Behaviour(
            "cpu", "stress-ng matrix workers (--cpu-workers, several per core) beside the server", cpu_stress=True
        ),
        Behaviour("io", "mod_dumpio at LogLevel dumpio:trace7: every byte in and out is logged", dumpio=True),
        Behaviour("opcache", "OPcache off in php-fpm", opcache=False),
        Behaviour("socket", "KeepAlive Off: a new TCP connection per request", keepalive=False),
        Behaviour(
            "ssl",
            "mod_ssl not loaded (the paper's definition; the client speaks plain HTTP either way, so nothing on "
            "a request's path changes)",
            ssl=False,
        ),
        Behaviour(
            "ssl_https",
            "the client speaks HTTPS to the mod_ssl virtual host (normal: plain HTTP): the TLS work of ssl made "
            "visible per request (ours, not one of the seven)",
            https=True,
        ),
        Behaviour(
            "contention",
            "a PHP file cache behind a lock: 1 request in 40 rebuilds it (400 files) under an exclusive flock "
            "while the others wait for a shared one (request_analysis's case study; not one of the seven)",
            cache_contention=True,
        ),
    )
}
PAPER_SEVEN = ("normal", "connection", "cpu", "io", "opcache", "socket", "ssl")
NOVELTIES = tuple(name for name in PAPER_SEVEN if name != "normal")
DEFAULT = (*PAPER_SEVEN, "ssl_https")  # `all`: the paper's seven and the visible ssl variant


ALL_HINT = "(or 'all' for the paper's seven and ssl_https, 'paper' for the seven)"


def parse_behaviours(names: str | list[str]) -> list[Behaviour]:
    """'normal,cpu' or ['normal', 'cpu'] or 'all' -> behaviours; unknown names list the valid ones."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if names == ["all"]:  # the paper's seven and ssl_https
        return [BEHAVIOURS[n] for n in DEFAULT]
    if names == ["paper"]:  # the paper's seven only
        return [BEHAVIOURS[n] for n in PAPER_SEVEN]
    unknown = [n for n in names if n not in BEHAVIOURS]
    if unknown:
        raise TraceError(
            f"unknown behaviour(s) {unknown}; valid: {', '.join(BEHAVIOURS)} {ALL_HINT}"
        )
    if not names:
        raise TraceError(f"no behaviours given; valid: {', '.join(BEHAVIOURS)} {ALL_HINT}")
    return [BEHAVIOURS[n] for n in dict.fromkeys(names)]
