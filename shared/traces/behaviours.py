"""The paper's seven server behaviours: normal plus six perturbations (Fournier et al., setup-ood.md)."""

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


BEHAVIOURS: dict[str, Behaviour] = {
    b.name: b
    for b in (
        Behaviour("normal", "event MPM, KeepAlive On, MaxRequestWorkers 400, mod_ssl loaded, OPcache on"),
        Behaviour("connection", "MaxRequestWorkers 25 (ServerLimit 1, ThreadsPerChild 25)", max_request_workers=25),
        Behaviour("cpu", "stress-ng matrix workers (one per CPU) running beside the server", cpu_stress=True),
        Behaviour("io", "mod_dumpio at LogLevel dumpio:trace7: every byte in and out is logged", dumpio=True),
        Behaviour("opcache", "OPcache off in php-fpm", opcache=False),
        Behaviour("socket", "KeepAlive Off: a new TCP connection per request", keepalive=False),
        Behaviour("ssl", "mod_ssl not loaded (the client speaks plain HTTP either way)", ssl=False),
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


def parse_behaviours(names: str | list[str]) -> list[Behaviour]:
    """'normal,cpu' or ['normal', 'cpu'] or 'all' -> behaviours; unknown names list the valid ones."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if names == ["all"]:  # the paper's seven
        return [BEHAVIOURS[n] for n in PAPER_SEVEN]
    unknown = [n for n in names if n not in BEHAVIOURS]
    if unknown:
        raise TraceError(
            f"unknown behaviour(s) {unknown}; valid: {', '.join(BEHAVIOURS)} (or 'all' for the paper's seven)"
        )
    if not names:
        raise TraceError(f"no behaviours given; valid: {', '.join(BEHAVIOURS)} (or 'all' for the paper's seven)")
    return [BEHAVIOURS[n] for n in dict.fromkeys(names)]
